"""Typed errors of the access-server client: each says what went wrong and what to do next.

The CLI maps each class to one exit code (see `streamctl/cli/exit_codes.py`), so
the classes follow the user's next step, not the HTTP status.
"""

from __future__ import annotations


class ClientError(Exception):
    """Base of every expected failure talking to the access server or the identity provider."""

    def __init__(self, message: str, hint: str | None = None, code: str = "error") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code

    def __str__(self) -> str:
        return self.message


class ServerUnreachable(ClientError):
    """No HTTP answer at all: wrong URL, server down, network or TLS failure."""


class NotLoggedIn(ClientError):
    """No usable token for this profile: the user must log in (again)."""


class TokenExpired(NotLoggedIn):
    """The token ran out and could not be refreshed."""


class NotAuthorized(ClientError):
    """The server understood the request and refused it for this identity."""


class ApprovalRequired(NotAuthorized):
    """The request needs a just-in-time approval first (e.g. a write to a high-value topic)."""


class NotFound(ClientError):
    """The named grant, approval or session does not exist (or is not visible to this identity)."""


class Conflict(ClientError):
    """The request clashes with the current state (already decided, already revoked...)."""


class RequestRejected(ClientError):
    """The server rejected the request as malformed or invalid (4xx other than the above)."""


class ServerFailed(ClientError):
    """The server answered with a 5xx or something that is not the documented API."""


class DeviceFlowDenied(ClientError):
    """The user (or an approver) declined the device login."""


class DeviceFlowExpired(ClientError):
    """The device code expired before anyone approved it."""


class GrantInvalid(ClientError):
    """A grant token failed verification against the server's JWKS; never use it."""


class TokenStorageError(ClientError):
    """Tokens could not be stored or read back where the user asked for them."""
