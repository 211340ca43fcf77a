"""Domain errors and THE single mapping from an error to an HTTP status and JSON body.

Every error carries a contract `code`. Browser-flow errors may also carry the session's stored,
already validated `return_to` so the callback can redirect there (never to request data).
"""

# Not `typing.TYPE_CHECKING`, and no `from __future__ import annotations` (annotations are quoted
# instead): the static script route imports this module, and nothing else it does not use.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar


class ConnectError(Exception):
    """Base of every error the service answers with. `code` is the contract's machine code."""

    code: "ClassVar[str]" = "server_error"
    status: "ClassVar[int]" = 500
    default_message: "ClassVar[str]" = "Something went wrong. Please try again."

    def __init__(self, message: str | None = None, *, return_to: str | None = None) -> None:
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.return_to = return_to
        # True when the flow was left retryable (the session released, not failed).
        self.retryable = False
        # Set with `return_to` for a session created with "display": "popup": its id. The browser's
        # answer is then the popup result page (`web.popup_result`), not a redirect.
        self.popup_session: str | None = None


# --- browser flow (codes of contract.md "When the flow ends") -------------------------------
class SessionInvalid(ConnectError):
    code = "session_invalid"
    status = 400
    default_message = "This sign-in link is not valid. Please start again from the app."


class SessionExpired(ConnectError):
    code = "session_expired"
    status = 410
    default_message = "This sign-in link has expired. Please start again from the app."


class SessionUsed(ConnectError):
    code = "session_used"
    status = 409
    default_message = "This sign-in link has already been used. Please start again from the app."


class BrowserMismatch(ConnectError):
    code = "browser_mismatch"
    status = 403
    default_message = "This sign-in was started in another browser. Please start again here."


class GrantInvalid(ConnectError):
    code = "grant_invalid"
    status = 502
    default_message = "Microsoft or Nylas did not confirm the connection. Please try again."


class AccountAlreadyLinked(ConnectError):
    code = "account_already_linked"
    status = 409
    default_message = "This Microsoft account is already connected to another user."


class EmailMismatch(ConnectError):
    code = "email_mismatch"
    status = 403
    default_message = "You signed in with a different Microsoft account than the one this link is for."


class AccessDenied(ConnectError):
    code = "access_denied"
    status = 403
    default_message = "The connection was cancelled or access was not granted."


class AccountNotSupported(ConnectError):
    code = "account_not_supported"
    status = 403
    default_message = "This is a personal Microsoft account. Please sign in with a work or school account."


class AdminConsentRequired(ConnectError):
    code = "admin_consent_required"
    status = 403
    default_message = (
        "Your organisation requires an administrator to approve this app before you can connect. "
        "Please ask your IT administrator."
    )


class TenantMismatch(ConnectError):
    """Admin consent: an administrator of another organisation than the link's answered."""

    code = "tenant_mismatch"
    status = 403
    default_message = "This approval link was made for another organisation."


class ConsentUnverified(ConnectError):
    """Admin consent: Microsoft does not confirm the app in the tenant."""

    code = "consent_unverified"
    status = 502
    default_message = "Microsoft did not confirm the approval for your organisation. Please try again."


class UpstreamUnavailable(ConnectError):
    code = "upstream_unavailable"
    status = 503
    default_message = "The service is temporarily unavailable. Please try again in a moment."


class ExchangeUnanswered(UpstreamUnavailable):
    """v3: the code exchange failed without an answer that says Nylas did nothing (a read timeout, a
    dropped connection, a 5xx): Nylas may have completed it, so a grant may exist whose id was never
    learnt. Answered as `upstream_unavailable`; the callback records a lost-exchange outbox entry so
    the sweeper revokes such a grant once the flow can no longer complete (docs/security.md)."""


class ServerError(ConnectError):
    code = "server_error"
    status = 500


#: The codes a browser may see at the end of the flow (contract.md "When the flow ends").
BROWSER_CODES = frozenset(
    {
        "access_denied",
        "session_invalid",
        "session_expired",
        "session_used",
        "browser_mismatch",
        "grant_invalid",
        "account_already_linked",
        "email_mismatch",
        "account_not_supported",
        "admin_consent_required",
        "upstream_unavailable",
        "server_error",
    }
)


# --- backend API -----------------------------------------------------------------------------
class Unauthorized(ConnectError):
    code = "unauthorized"
    status = 401
    default_message = "Missing or invalid API key."


class InvalidRequest(ConnectError):
    code = "invalid_request"
    status = 400
    default_message = "The request is not valid."


class PayloadTooLarge(ConnectError):
    code = "payload_too_large"
    status = 413
    default_message = "The request body is too large."


class ReturnToNotAllowed(ConnectError):
    code = "return_to_not_allowed"
    status = 400
    default_message = "return_to is not in the allow-list."


class NotFound(ConnectError):
    code = "not_found"
    status = 404
    default_message = "Not found."


class Conflict(ConnectError):
    code = "conflict"
    status = 409
    default_message = "The record changed concurrently; retry the request."


# --- meetings (contract.md "Meetings") -------------------------------------------------------
class NotConnected(ConnectError):
    code = "not_connected"
    status = 404
    default_message = "This user has no connected Microsoft account."


class ReauthRequired(ConnectError):
    code = "reauth_required"
    status = 409
    default_message = "The user's Microsoft connection is no longer valid; connect again."


class TeamsUnavailable(ConnectError):
    code = "teams_unavailable"
    status = 422
    default_message = "This Microsoft account cannot host Microsoft Teams meetings."


class IdempotencyKeyReused(ConnectError):
    code = "idempotency_key_reused"
    status = 422
    default_message = "This Idempotency-Key was already used with a different request."


class RateLimited(ConnectError):
    code = "rate_limited"
    status = 429
    default_message = "Too many requests for this account; retry after the delay in Retry-After."

    def __init__(self, message: str | None = None, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = max(1, min(int(retry_after), 3600))


class UnsupportedFlavour(ConnectError):
    code = "unsupported_flavour"
    status = 400
    default_message = "Meetings need the Nylas v3 API; this deployment uses the beta flavour."


#: Every JSON answer of the backend API (errors included): never cached, never sniffed.
API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def error_headers(error: BaseException) -> dict[str, str]:
    """Headers an error answer carries besides its body (`Retry-After` of a 429)."""
    if isinstance(error, RateLimited):
        return {"Retry-After": str(error.retry_after)}
    return {}


def to_http(error: BaseException) -> "tuple[int, dict[str, Any]]":
    """THE mapping: any exception → (HTTP status, contract JSON error body).

    Unknown exceptions become a generic 500 `server_error` (their text is never shown).
    """
    if not isinstance(error, ConnectError):
        error = ServerError()
    return error.status, {"error": {"code": error.code, "message": error.message}}
