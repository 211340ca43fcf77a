"""Shared pytest configuration (kept minimal; unit fixtures live in tests/unit/conftest.py)."""
