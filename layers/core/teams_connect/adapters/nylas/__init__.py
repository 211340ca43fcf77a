"""Nylas adapters: one port, two flavours (v3, beta)."""
