"""Plug points the approvals and audit modules (access server part 2) fill in.

Part 1 asks these two questions and never answers them itself: "does this
approval allow this grant?" and "record this decision". Until part 2 installs
its implementations (via an extension's `register(app, state)`), high-value
writes are refused and decisions go to the log only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.orm import Session

from streamctl.kafka.operations import OperationKind

log = logging.getLogger("streamctl.server.decisions")


@dataclass(frozen=True)
class ApprovalCheck:
    """The answer about one approval: allowed or not, why, and until when a grant may live."""

    allowed: bool
    reason: str
    window_end: float | None = None  # POSIX seconds; a grant using it may not outlive this


class ApprovalGate(Protocol):
    """Decides whether an approval id covers a grant request (part 2 implements it)."""

    def check(
        self,
        session: Session,
        *,
        approval_id: str,
        subject: str,
        cluster: str,
        topics: tuple[str, ...],
        operations: frozenset[OperationKind],
        now: float,
    ) -> ApprovalCheck: ...


class NoApprovals:
    """The gate before approvals exist: no approval id is ever accepted."""

    def check(
        self,
        session: Session,
        *,
        approval_id: str,
        subject: str,
        cluster: str,
        topics: tuple[str, ...],
        operations: frozenset[OperationKind],
        now: float,
    ) -> ApprovalCheck:
        return ApprovalCheck(False, "approvals are not enabled on this server")


class DecisionRecorder(Protocol):
    """Receives every decision the server makes (login, grant issued/refused, ...)."""

    def record(
        self,
        session: Session | None,
        *,
        kind: str,
        subject: str,
        outcome: str,
        detail: Mapping[str, Any],
    ) -> None: ...


class LogRecorder:
    """The recorder before the audit store exists: one log line per decision, no secrets."""

    def record(
        self,
        session: Session | None,
        *,
        kind: str,
        subject: str,
        outcome: str,
        detail: Mapping[str, Any],
    ) -> None:
        log.info("%s %s %s %s", kind, subject, outcome, dict(detail))
