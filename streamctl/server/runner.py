"""Serving the app with Hypercorn's trio worker until SIGINT/SIGTERM."""

from __future__ import annotations

import logging
import signal
from functools import partial
from typing import Any

import trio
from fastapi import FastAPI
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from streamctl.server.app import create_app
from streamctl.server.config import ServerConfig

log = logging.getLogger("streamctl.server")


async def _until_signal() -> None:
    """Hypercorn's shutdown trigger: return on the first SIGINT or SIGTERM."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("stopping on %s", signal.Signals(signum).name)
            return


def _asgi(app: FastAPI) -> Any:
    """Hypercorn's ASGI type is narrower than Starlette's; they agree at run time."""
    return app


def run_server(config: ServerConfig, host: str | None = None, port: int | None = None) -> None:
    """Open the store (migrating it), then serve HTTP on host:port until a stop signal."""
    logging.getLogger("alembic").setLevel(logging.WARNING)
    app = create_app(config)
    hc = HypercornConfig()
    hc.bind = [f"{host or config.host}:{config.port if port is None else port}"]
    hc.accesslog = None
    hc.errorlog = "-"
    hc.graceful_timeout = 5.0
    log.info("serving on %s as issuer %s", hc.bind[0], config.issuer_url)
    try:
        trio.run(partial(serve, _asgi(app), hc, shutdown_trigger=_until_signal, mode="asgi"))
    finally:
        app.state.server.store.dispose()
