"""OpenID Connect discovery and the OAuth token endpoint: refresh and client credentials.

The issuer is whatever the access server names in /v1/login-config: its own
built-in issuer or an external IdP. Everything else comes from that issuer's
discovery document, never from hard-coded paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from streamctl.client.errors import (
    ClientError,
    NotLoggedIn,
    RequestRejected,
    ServerFailed,
    ServerUnreachable,
    TokenExpired,
)
from streamctl.client.tokens import TokenSet

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass(frozen=True)
class IssuerMetadata:
    """The endpoints of one OIDC issuer that the CLI uses."""

    issuer: str
    token_endpoint: str
    device_authorization_endpoint: str | None
    jwks_uri: str | None


def _json_or_fail(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ServerFailed(f"{what} at {response.request.url} did not answer with JSON "
                           f"(HTTP {response.status_code})")
    return body


def discover(http: httpx.Client, issuer: str) -> IssuerMetadata:
    """Read the issuer's /.well-known/openid-configuration and check it names itself."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        response = http.get(url)
    except httpx.HTTPError as exc:
        raise ServerUnreachable(
            f"cannot reach the identity provider at {issuer} ({type(exc).__name__})",
            hint="check the network, or the issuer the access server announces",
        ) from exc
    if response.status_code != 200:
        raise ServerFailed(f"OIDC discovery at {url} answered HTTP {response.status_code}")
    doc = _json_or_fail(response, "OIDC discovery")
    if str(doc.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
        raise ServerFailed(
            f"OIDC discovery at {url} names issuer {doc.get('issuer')!r}, expected {issuer!r}"
        )
    token_endpoint = doc.get("token_endpoint")
    if not isinstance(token_endpoint, str):
        raise ServerFailed(f"OIDC discovery at {url} has no token_endpoint")
    device = doc.get("device_authorization_endpoint")
    jwks = doc.get("jwks_uri")
    return IssuerMetadata(
        issuer=str(doc["issuer"]),
        token_endpoint=token_endpoint,
        device_authorization_endpoint=device if isinstance(device, str) else None,
        jwks_uri=jwks if isinstance(jwks, str) else None,
    )


def post_token(http: httpx.Client, token_endpoint: str, form: dict[str, str]) -> httpx.Response:
    """POST a form to the token endpoint; network failures become ServerUnreachable."""
    try:
        return http.post(token_endpoint, data=form, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise ServerUnreachable(
            f"cannot reach the token endpoint {token_endpoint} ({type(exc).__name__})",
            hint="check the network and `streamctl config show`",
        ) from exc


def oauth_error(response: httpx.Response) -> tuple[str, str]:
    """The RFC 6749 `error` code and description of a failed token response."""
    try:
        body = response.json()
    except ValueError:
        return "invalid_response", f"HTTP {response.status_code}"
    if not isinstance(body, dict):
        return "invalid_response", f"HTTP {response.status_code}"
    code = str(body.get("error", "invalid_response"))
    description = str(body.get("error_description") or body.get("message") or code)
    return code, description


def refresh(http: httpx.Client, tokens: TokenSet) -> TokenSet:
    """Trade the refresh token for a new access token; a refused refresh means log in again."""
    if not tokens.refresh_token or not tokens.token_endpoint:
        raise TokenExpired(
            "your login has expired", hint="run `streamctl login` to sign in again"
        )
    response = post_token(
        http,
        tokens.token_endpoint,
        {
            "grant_type": "refresh_token",
            "refresh_token": tokens.refresh_token,
            "client_id": tokens.client_id,
        },
    )
    if response.status_code == 200:
        return TokenSet.from_token_response(
            _json_or_fail(response, "token refresh"),
            token_endpoint=tokens.token_endpoint,
            client_id=tokens.client_id,
            issuer=tokens.issuer,
            previous_refresh=tokens.refresh_token,
        )
    if 400 <= response.status_code < 500:
        raise TokenExpired(
            "your login has expired and could not be renewed",
            hint="run `streamctl login` to sign in again",
        )
    raise ServerFailed(f"token refresh failed with HTTP {response.status_code}")


def client_credentials(
    http: httpx.Client, meta: IssuerMetadata, client_id: str, client_secret: str
) -> TokenSet:
    """A bot's login (RFC 6749 4.4): the token stays in memory, never in a store."""
    response = post_token(
        http,
        meta.token_endpoint,
        {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
        },
    )
    if response.status_code == 200:
        return TokenSet.from_token_response(
            _json_or_fail(response, "client credentials"),
            token_endpoint=meta.token_endpoint,
            client_id=client_id,
            issuer=meta.issuer,
        )
    code, description = oauth_error(response)
    if code in ("invalid_client", "unauthorized_client", "invalid_grant"):
        raise NotLoggedIn(
            f"the identity provider refused client {client_id!r}: {description}",
            hint="check --client-id and the secret in --client-secret-file",
            code=code,
        )
    if 400 <= response.status_code < 500:
        raise RequestRejected(f"client credentials login refused: {description}", code=code)
    raise ServerFailed(f"client credentials login failed with HTTP {response.status_code}")


def ensure_token_ok(response: httpx.Response) -> dict[str, Any]:
    """The JSON body of a successful token response, or a ClientError."""
    if response.status_code == 200:
        return _json_or_fail(response, "token endpoint")
    code, description = oauth_error(response)
    raise ClientError(f"the identity provider refused the login: {description}", code=code)
