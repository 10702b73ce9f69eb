"""Build test grants with the same model the access server signs (no server needed)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from streamctl.kafka.operations import OperationKind
from streamctl.policy.grant import ClusterSettings, Grant, MaskingRule, TopicClass


def make_grant(
    *,
    topics: Iterable[str] = ("orders",),
    ops: Iterable[str] = ("read",),
    classes: Mapping[str, Iterable[str]] | None = None,
    approval_id: str | None = None,
    groups: Iterable[str] = ("*",),
    ttl: float = 3600,
    bootstrap: str = "127.0.0.1:9092",
    masking: Iterable[MaskingRule] = (),
    security_protocol: str = "PLAINTEXT",
    sasl_mechanism: str | None = None,
    subject: str = "alice",
) -> Grant:
    """A grant valid from now for `ttl` seconds."""
    now = time.time()
    return Grant(
        grant_id="g-test",
        subject=subject,
        cluster=ClusterSettings(
            name="test",
            bootstrap=bootstrap,
            security_protocol=security_protocol,
            sasl_mechanism=sasl_mechanism,
        ),
        topics=tuple(topics),
        operations=frozenset(OperationKind(o) for o in ops),
        not_before=now - 5,
        expires_at=now + ttl,
        topic_classes={t: frozenset(TopicClass(c) for c in cs) for t, cs in (classes or {}).items()},
        masking=tuple(masking),
        approval_id=approval_id,
        groups=tuple(groups),
    )
