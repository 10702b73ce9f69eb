"""Grants with masking rules, for the masking tests."""

from __future__ import annotations

from streamctl.kafka.operations import OperationKind
from streamctl.policy.grant import ClusterSettings, Grant, MaskingRule

SECRET = b"test-masking-secret"


def grant_with(*rules: MaskingRule, grant_id: str = "grant-1", unmasked: bool = False) -> Grant:
    return Grant(
        grant_id=grant_id,
        subject="alice",
        cluster=ClusterSettings("test", "127.0.0.1:9092"),
        topics=("*",),
        operations=frozenset({OperationKind.READ}),
        not_before=0,
        expires_at=4_000_000_000,
        masking=tuple(rules),
        unmasked=unmasked,
    )


def rule(**kwargs: object) -> MaskingRule:
    kwargs.setdefault("topics", ("orders*",))
    return MaskingRule(**kwargs)  # type: ignore[arg-type]
