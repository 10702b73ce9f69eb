"""The access server's ASGI app: `create_app(config)` wires state, routers and error handling.

Extensions (access server part 2: approvals, transcripts, audit) are modules
named in `EXTENSIONS`; each exposes `register(app: FastAPI, state: ServerState)`
which includes its routers and may replace `state.approval_gate` and
`state.recorder`.
"""

from __future__ import annotations

import importlib

from fastapi import FastAPI

from streamctl import __version__
from streamctl.server import grants, identity_api, oidc
from streamctl.server.config import ServerConfig
from streamctl.server.errors import BodySizeLimit, install_error_handlers
from streamctl.server.state import ServerState

#: Modules with a `register(app, state)` function, loaded in this order.
EXTENSIONS: tuple[str, ...] = (
    "streamctl.server.audit",
    "streamctl.server.approvals",
    "streamctl.server.transcripts",
    "streamctl.server.retention",
)


def create_app(config: ServerConfig, state: ServerState | None = None) -> FastAPI:
    """Build the app; opens the store and runs migrations unless a state is passed in."""
    state = state or ServerState.open(config)
    app = FastAPI(
        title="streamctl access server",
        version=__version__,
        description="Identity, policy and signed grants for streamctl.",
    )
    app.state.server = state
    install_error_handlers(app)
    app.include_router(oidc.router)
    app.include_router(identity_api.router)
    app.include_router(grants.router)
    for name in EXTENSIONS:
        importlib.import_module(name).register(app, state)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        """Liveness for load balancers and tests."""
        return {"status": "ok"}

    app.add_middleware(BodySizeLimit, max_bytes=config.max_body_bytes)
    return app
