"""`streamctl server audit-export`: the audit log as JSON lines, for a SIEM."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Annotated

import typer

from streamctl.server.config import ConfigError, load_config


def audit_export(
    config: Annotated[
        Path,
        typer.Option("--config", "-c", envvar="STREAMCTL_SERVER_CONFIG", dir_okay=False,
                     help="The server settings file (server.yaml)."),
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", dir_okay=False,
                     help="Write to this file instead of standard output."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only events at or after this ISO 8601 time."),
    ] = None,
) -> None:
    """Print every audit event (oldest first) as one JSON object per line."""
    from sqlalchemy.exc import SQLAlchemyError

    from streamctl.server.audit import export_lines
    from streamctl.server.store import Store

    try:
        cfg = load_config(config)
        start = dt.datetime.fromisoformat(since.replace("Z", "+00:00")) if since else None
    except (ConfigError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2 if isinstance(exc, ValueError) else 1) from None
    if start is not None and start.tzinfo is None:
        start = start.replace(tzinfo=dt.UTC)
    store = Store(cfg.database_url)
    count = 0
    try:
        out = output.open("w", encoding="utf-8") if output else sys.stdout
        try:
            for line in export_lines(store, since=start):
                out.write(line + "\n")
                count += 1
        finally:
            if output:
                out.close()
    except SQLAlchemyError as exc:
        typer.echo(f"error: cannot read the audit log ({type(exc).__name__}); "
                   "has `streamctl server run` created the database?", err=True)
        raise typer.Exit(1) from None
    finally:
        store.dispose()
    if output:
        typer.echo(f"wrote {count} audit events to {output}", err=True)
