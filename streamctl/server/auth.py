"""Who is calling: the `current_principal` dependency and the built-in issuer's access tokens.

A bearer token is either an access token from the built-in issuer (signed with
the server's keys, audience `streamctl-api`, header typ `at+jwt`) or one from a
trusted external issuer. Roles come from the live policy (and, for external
tokens, from the mapped claim), so a policy reload applies to existing logins.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request

from streamctl.policy.token import TokenError, verify_jwt
from streamctl.server.errors import ApiError
from streamctl.server.state import API_AUDIENCE, ServerState

ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - a JWT typ header, not a secret


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    subject: str
    kind: str  # "user" | "service"
    roles: tuple[str, ...]
    token_expires_at: float
    issuer: str


def server_state(request: Request) -> ServerState:
    """The process's ServerState (a FastAPI dependency)."""
    state: ServerState = request.app.state.server
    return state


State = Annotated[ServerState, Depends(server_state)]


def issue_access_token(
    state: ServerState, subject: str, kind: str, client_id: str, scope: str = ""
) -> tuple[str, int]:
    """A short-lived access token for the built-in issuer; returns (token, lifetime seconds)."""
    now = int(state.now())
    ttl = state.config.access_token_ttl_seconds
    claims = {
        "iss": state.config.issuer_url,
        "aud": API_AUDIENCE,
        "sub": subject,
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "jti": secrets.token_urlsafe(16),
        "client_id": client_id,
        "kind": kind,
        "scope": scope,
    }
    token, _kid = state.keys.sign(claims, typ=ACCESS_TOKEN_TYPE)
    return token, ttl


def _unauthorized(message: str) -> ApiError:
    return ApiError(
        401,
        "not_authenticated",
        message,
        hint="streamctl login",
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def authenticate(state: ServerState, token: str) -> Principal:
    """Verify a bearer token from the built-in or an external issuer."""
    try:
        unverified: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise _unauthorized("the access token is not a readable JWT") from exc
    issuer = str(unverified.get("iss", "")).rstrip("/")
    policy = state.policy.current()
    try:
        if issuer == state.config.issuer_url:
            if header.get("typ") != ACCESS_TOKEN_TYPE:
                raise TokenError("not an access token (a grant token cannot call the API)")
            claims = verify_jwt(
                token, state.keys.jwks(), issuer=state.config.issuer_url, audience=API_AUDIENCE
            )
            subject = str(claims["sub"])
            kind = "service" if claims.get("kind") == "service" else "user"
            roles = set(policy.roles_of(subject))
            if kind == "service":
                service = state.config.service(subject)
                if service is None:
                    raise TokenError(f"service {subject} is no longer configured")
                roles.update(service.roles)
            elif state.config.user(subject) is None:
                raise TokenError(f"user {subject} is no longer configured")
            return Principal(subject, kind, tuple(sorted(roles)), float(claims["exp"]), issuer)
        verifier = state.external.get(issuer)
        if verifier is None:
            raise TokenError(f"tokens from issuer {issuer or '(none)'} are not trusted here")
        identity = verifier.verify(token)
        roles = set(identity.roles) | set(policy.roles_of(identity.subject))
        return Principal(
            identity.subject, "user", tuple(sorted(roles)), identity.expires_at, identity.issuer
        )
    except TokenError as exc:
        raise _unauthorized(f"access token refused: {exc}") from exc


def current_principal(request: Request, state: State) -> Principal:
    """FastAPI dependency: the authenticated caller, or a 401 with a login hint."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("no bearer token: log in first")
    return authenticate(state, token.strip())


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
