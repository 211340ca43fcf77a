"""A personal Microsoft account refused by an `organizations` deployment ends in
`account_not_supported`: Microsoft's AADSTS500200 in the callback's error_description is matched by
its number only (the description itself is never shown or stored)."""

from __future__ import annotations

import pytest

from teams_connect.adapters.nylas.v3 import callback_error_code

AADSTS500200 = (
    "AADSTS500200: User account 'someone@outlook.com' is a personal Microsoft account. Personal "
    "Microsoft accounts are not supported for this application unless explicitly invited to an "
    "organization."
)


@pytest.mark.parametrize("error", ["invalid_request", "access_denied", "unauthorized_client"])
def test_aadsts500200_is_account_not_supported(error: str) -> None:
    assert callback_error_code(error, AADSTS500200) == "account_not_supported"


@pytest.mark.parametrize(
    ("error", "description", "code"),
    [
        ("access_denied", "The user denied consent", "access_denied"),
        (
            "invalid_request",
            "AADSTS50020: User account from identity provider does not exist",
            "grant_invalid",
        ),
        ("invalid_request", "see AADSTS500200: somewhere later", "grant_invalid"),
        ("server_error", "", "upstream_unavailable"),
    ],
)
def test_other_errors_keep_their_codes(error: str, description: str, code: str) -> None:
    assert callback_error_code(error, description) == code
