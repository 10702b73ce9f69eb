"""Where this machine spools transcripts, and the upload of sessions left behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamctl.cli.common import Session
from streamctl.client.profiles import data_dir
from streamctl.client.transcripts import AccessServerTransport
from streamctl.transcript.upload import sync_pending


def spool_dir() -> Path:
    """One spool directory per machine user; sessions of every profile share it."""
    return data_dir() / "spool"


def sync_spool(session: Session) -> list[dict[str, Any]]:
    """Upload every finished or abandoned session; return what happened to each."""
    directory = spool_dir()
    if not directory.is_dir():
        return []
    outcomes = sync_pending(directory, AccessServerTransport(session.client()))
    return [
        {"session_id": o.session_id, "sealed": o.sealed, "uploaded": o.uploaded, "error": o.error}
        for o in outcomes
    ]
