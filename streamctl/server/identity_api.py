"""Small identity endpoints for the CLI: which issuer to log in with, and who am I."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from streamctl.server.auth import CurrentPrincipal, State
from streamctl.server.grants import iso
from streamctl.server.state import PUBLIC_CLIENT_ID

router = APIRouter(prefix="/v1", tags=["identity"])


class LoginConfig(BaseModel):
    """Where the CLI runs the device flow."""

    issuer: str
    client_id: str
    external: bool


class WhoAmI(BaseModel):
    """The caller as the server sees it."""

    subject: str
    kind: str
    roles: list[str]
    token_expires_at: str


@router.get("/login-config", response_model=LoginConfig)
def login_config(state: State) -> LoginConfig:
    """The issuer the CLI should log in with: the first external one, else the built-in issuer."""
    if state.config.external_issuers:
        ext = state.config.external_issuers[0]
        return LoginConfig(issuer=ext.issuer, client_id=ext.client_id, external=True)
    return LoginConfig(issuer=state.config.issuer_url, client_id=PUBLIC_CLIENT_ID, external=False)


@router.get("/whoami", response_model=WhoAmI)
def whoami(principal: CurrentPrincipal) -> WhoAmI:
    """Identity, roles and token expiry of the caller."""
    return WhoAmI(
        subject=principal.subject,
        kind=principal.kind,
        roles=list(principal.roles),
        token_expires_at=iso(principal.token_expires_at),
    )
