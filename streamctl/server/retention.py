"""Retention: transcripts and audit events older than the configured age are deleted, and the
deletion itself is written to the audit log.

Settings come from the `retention` section of the server settings file (absent = keep
forever):

    retention:
      transcripts_days: 90     # or transcripts_seconds
      audit_days: 365          # or audit_seconds
      interval_seconds: 3600   # how often each server process applies it

Every server process runs it on a daemon thread; running it on several processes at
once is harmless (deleting what is already gone deletes nothing).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy import delete, select

from streamctl.server.audit import AuditEvent, add_audit
from streamctl.server.state import ServerState
from streamctl.server.store import Store, utcnow
from streamctl.server.transcripts import (
    TranscriptEvent,
    TranscriptOffsets,
    TranscriptSession,
    TranscriptTopic,
)
from streamctl.server.webhooks import read_section

log = logging.getLogger("streamctl.server.retention")


class RetentionSettingsError(ValueError):
    """The `retention` section is wrong; the message names the field."""


@dataclass(frozen=True)
class RetentionSettings:
    """How long transcripts and audit events are kept (None: forever)."""

    transcripts_seconds: float | None = None
    audit_seconds: float | None = None
    interval_seconds: float = 3600.0


def _age(raw: dict[str, Any], name: str, path: Path) -> float | None:
    days, seconds = raw.get(f"{name}_days"), raw.get(f"{name}_seconds")
    for key, value in ((f"{name}_days", days), (f"{name}_seconds", seconds)):
        if value is not None and (
            not isinstance(value, int | float) or isinstance(value, bool) or value <= 0
        ):
            raise RetentionSettingsError(f"{path}: retention.{key} must be a positive number")
    if seconds is not None:
        return float(seconds)
    return float(days) * 86400 if days is not None else None


def load_retention_settings(path: Path) -> RetentionSettings:
    """Read the `retention` section of the settings file."""
    raw = dict(read_section(path, "retention"))
    interval = raw.get("interval_seconds", 3600)
    if not isinstance(interval, int | float) or isinstance(interval, bool) or interval <= 0:
        raise RetentionSettingsError(f"{path}: retention.interval_seconds must be positive")
    return RetentionSettings(
        _age(raw, "transcripts", path), _age(raw, "audit", path), float(interval)
    )


@dataclass(frozen=True)
class RetentionResult:
    """What one pass deleted."""

    sessions: int
    audit_events: int


def apply_retention(store: Store, settings: RetentionSettings,
                    now: dt.datetime | None = None) -> RetentionResult:
    """Delete what is older than its retention; audit the deletion when anything went."""
    now = now or utcnow()
    sessions = audit_events = 0
    detail: dict[str, Any] = {}
    with store.session() as session:
        if settings.transcripts_seconds is not None:
            cutoff = now - dt.timedelta(seconds=settings.transcripts_seconds)
            ids = list(session.scalars(
                select(TranscriptSession.id).where(TranscriptSession.started_at < cutoff)))
            for table in (TranscriptEvent, TranscriptOffsets, TranscriptTopic):
                session.execute(delete(table).where(table.session_id.in_(ids)))
            session.execute(delete(TranscriptSession).where(TranscriptSession.id.in_(ids)))
            sessions = len(ids)
            if ids:
                detail.update(transcripts_before=cutoff.isoformat(), session_ids=ids[:1000])
        if settings.audit_seconds is not None:
            cutoff = now - dt.timedelta(seconds=settings.audit_seconds)
            result = session.execute(delete(AuditEvent).where(AuditEvent.ts < cutoff))
            audit_events = int(getattr(result, "rowcount", 0) or 0)
            if audit_events:
                detail.update(audit_before=cutoff.isoformat())
        if sessions or audit_events:
            add_audit(session, kind="retention.delete", subject="streamctl-server",
                      outcome="deleted",
                      detail={"sessions": sessions, "audit_events": audit_events, **detail})
    return RetentionResult(sessions, audit_events)


class RetentionRunner:
    """Applies retention at an interval on a daemon thread."""

    def __init__(self, store: Store, settings: RetentionSettings) -> None:
        self._store = store
        self.settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)
        self.passes = 0

    def start(self) -> None:
        if self.settings.transcripts_seconds is None and self.settings.audit_seconds is None:
            return
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            try:
                apply_retention(self._store, self.settings)
                self.passes += 1
            except Exception:  # keep the runner alive; the next pass retries
                log.exception("retention pass failed")
            if self._stop.wait(self.settings.interval_seconds):
                return


def register(app: FastAPI, state: ServerState) -> None:
    """Start applying retention in this server process."""
    runner = RetentionRunner(state.store, load_retention_settings(state.config.path))
    app.state.retention = runner
    runner.start()
    app.router.on_shutdown.append(runner.stop)
