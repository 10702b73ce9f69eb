"""HTTP side of the built-in issuer: discovery, JWKS, device authorization, token, /device page."""

from __future__ import annotations

import base64
import binascii
import html
from pathlib import Path
from string import Template
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse

from streamctl.server import device_flow
from streamctl.server.auth import State
from streamctl.server.device_flow import DEVICE_CODE_GRANT, oauth_error
from streamctl.server.state import PUBLIC_CLIENT_ID

router = APIRouter()
_PAGE = Template((Path(__file__).parent / "templates" / "device.html").read_text(encoding="utf-8"))
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@router.get("/.well-known/openid-configuration", tags=["identity"])
def discovery(state: State) -> dict[str, Any]:
    """OIDC discovery for the built-in issuer."""
    base = state.config.issuer_url
    return {
        "issuer": base,
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "token_endpoint": f"{base}/oauth/token",
        "device_authorization_endpoint": f"{base}/oauth/device_authorization",
        "grant_types_supported": [DEVICE_CODE_GRANT, "refresh_token", "client_credentials"],
        "response_types_supported": ["none"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256", "EdDSA"],
        "token_endpoint_auth_methods_supported": [
            "none",
            "client_secret_post",
            "client_secret_basic",
        ],
    }


@router.get("/.well-known/jwks.json", tags=["identity"])
def jwks(state: State) -> dict[str, Any]:
    """Every public key whose tokens may still be alive (retired ones included)."""
    return state.keys.jwks()


@router.post("/oauth/device_authorization", tags=["identity"])
def device_authorization(
    state: State,
    client_id: Annotated[str, Form(max_length=200)],
    scope: Annotated[str, Form(max_length=500)] = "",
) -> Any:
    """RFC 8628 section 3.1: start a device login."""
    with state.store.session() as session:
        body = device_flow.start(state, session, client_id, scope)
    return JSONResponse(body, headers=NO_STORE)


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, sep, secret = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise oauth_error("invalid_client", "unreadable Basic credentials", 401) from exc
    if not sep:
        raise oauth_error("invalid_client", "unreadable Basic credentials", 401)
    return client_id, secret


@router.post("/oauth/token", tags=["identity"])
def token(
    request: Request,
    state: State,
    grant_type: Annotated[str, Form(max_length=200)],
    device_code: Annotated[str | None, Form(max_length=200)] = None,
    refresh_token: Annotated[str | None, Form(max_length=200)] = None,
    client_id: Annotated[str | None, Form(max_length=200)] = None,
    client_secret: Annotated[str | None, Form(max_length=500)] = None,
    scope: Annotated[str, Form(max_length=500)] = "",
) -> Any:
    """Token endpoint: device_code, refresh_token and client_credentials grants."""
    basic = _basic_credentials(request)
    if basic is not None:
        client_id, client_secret = basic
    with state.store.session() as session:
        if grant_type == DEVICE_CODE_GRANT:
            if not device_code:
                raise oauth_error("invalid_request", "device_code is required")
            body = device_flow.poll(state, session, device_code, client_id or "")
        elif grant_type == "refresh_token":
            if not refresh_token:
                raise oauth_error("invalid_request", "refresh_token is required")
            body = device_flow.refresh(state, session, refresh_token, client_id or PUBLIC_CLIENT_ID)
        elif grant_type == "client_credentials":
            if not client_id or not client_secret:
                raise oauth_error("invalid_client", "client_id and client_secret are required", 401)
            body = device_flow.client_credentials(state, session, client_id, client_secret, scope)
        else:
            raise oauth_error(
                "unsupported_grant_type", f"grant type {grant_type!r} is not supported"
            )
    return JSONResponse(body, headers=NO_STORE)


def _page(
    user_code: str = "", message: str = "", error: bool = False, status: int = 200
) -> HTMLResponse:
    block = ""
    if message:
        css = "message error" if error else "message"
        block = f'<p class="{css}" id="message" role="status">{html.escape(message)}</p>'
    body = _PAGE.substitute(message=block, user_code=html.escape(user_code, quote=True))
    headers = {
        "Cache-Control": "no-store",
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": (
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"
        ),
    }
    return HTMLResponse(body, status_code=status, headers=headers)


@router.get("/device", response_class=HTMLResponse, tags=["identity"])
def device_page(user_code: str = "") -> HTMLResponse:
    """The verification page (RFC 8628 section 3.3); `?user_code=` prefills the code."""
    return _page(user_code[:32])


@router.post("/device", response_class=HTMLResponse, tags=["identity"])
def device_submit(
    request: Request,
    state: State,
    user_code: Annotated[str, Form()] = "",
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    action: Annotated[str, Form()] = "approve",
) -> HTMLResponse:
    """Sign in and approve or deny the device login."""
    user_code = user_code[:32]
    if action not in ("approve", "deny"):
        return _page(user_code, "Choose Approve or Deny.", error=True, status=400)
    if not user_code or not username or not password:
        return _page(user_code, "Enter the code, your username and your password.", True, 400)
    if len(username) > 200 or len(password) > 1000:
        return _page(user_code, "Wrong username or password.", error=True, status=400)
    address = request.client.host if request.client else "unknown"
    with state.store.session() as session:
        result = device_flow.verify_user(
            state,
            session,
            user_code=user_code,
            username=username,
            password=password,
            approve=action == "approve",
            client_address=address,
        )
    shown = "" if result.ok else user_code
    return _page(shown, result.message, error=not result.ok, status=result.status)
