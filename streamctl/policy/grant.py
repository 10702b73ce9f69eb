"""The grant: what one subject may do on one cluster, until when, and under which guardrails.

A grant travels as the claims of a JWT signed by the access server. This module
holds the typed model and its (de)serialisation to claims; signing and
verification live with the keys (server side) and the tunnel's verifier.
Everything the tunnel enforces must be in here, so the tunnel never needs to
ask the server what a topic's class is.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from streamctl.kafka.operations import GRANTABLE, OperationKind

#: The claim that carries everything streamctl-specific, beside the registered JWT claims.
GRANT_CLAIM = "streamctl"
#: OAuth scope put on every grant token, so a broker's OAUTHBEARER validator sees a scope claim.
GRANT_SCOPE = "kafka"


class TopicClass(StrEnum):
    """Classes a policy puts on topics; each carries a guardrail that no grant overrides."""

    HIGH_VALUE = "high-value"  # writes need an approval id in the grant
    IMMUTABLE = "immutable"  # never deleted, altered or truncated
    PII = "pii"  # masking rules apply


class GrantError(ValueError):
    """The claims do not describe a valid grant; the message names the field."""


@dataclass(frozen=True)
class MaskingRule:
    """One masking rule as the policy wrote it; the masking package interprets it."""

    topics: tuple[str, ...]
    fields: tuple[str, ...] = ()
    detectors: tuple[str, ...] = ()
    strategy: str = "redact"
    keep_last: int | None = None
    pattern: str | None = None
    apply_to: tuple[str, ...] = ("value",)
    name: str = ""

    def matches_topic(self, topic: str) -> bool:
        return any(fnmatch.fnmatchcase(topic, p) for p in self.topics)

    def to_claims(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "topics": list(self.topics),
            "fields": list(self.fields),
            "detectors": list(self.detectors),
            "strategy": self.strategy,
            "apply_to": list(self.apply_to),
        }
        if self.keep_last is not None:
            out["keep_last"] = self.keep_last
        if self.pattern is not None:
            out["pattern"] = self.pattern
        return out

    @classmethod
    def from_claims(cls, raw: Mapping[str, Any]) -> MaskingRule:
        try:
            keep_last = raw.get("keep_last")
            return cls(
                name=str(raw.get("name", "")),
                topics=tuple(str(t) for t in raw["topics"]),
                fields=tuple(str(f) for f in raw.get("fields", ())),
                detectors=tuple(str(d) for d in raw.get("detectors", ())),
                strategy=str(raw.get("strategy", "redact")),
                keep_last=int(keep_last) if keep_last is not None else None,
                pattern=str(raw["pattern"]) if raw.get("pattern") is not None else None,
                apply_to=tuple(str(a) for a in raw.get("apply_to", ("value",))),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise GrantError(f"masking rule {raw!r}: {exc}") from exc


@dataclass(frozen=True)
class ClusterSettings:
    """How the tunnel reaches the real cluster; no secrets (the grant token is the credential)."""

    name: str
    bootstrap: str
    security_protocol: str = "PLAINTEXT"  # PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL
    sasl_mechanism: str | None = None  # OAUTHBEARER presents the grant token itself
    tls_ca: str | None = None  # PEM text of the CA bundle, when the cluster uses a private CA
    tls_server_hostname: str | None = None

    def to_claims(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_claims(cls, raw: Mapping[str, Any]) -> ClusterSettings:
        try:
            return cls(
                name=str(raw["name"]),
                bootstrap=str(raw["bootstrap"]),
                security_protocol=str(raw.get("security_protocol", "PLAINTEXT")),
                sasl_mechanism=raw.get("sasl_mechanism"),
                tls_ca=raw.get("tls_ca"),
                tls_server_hostname=raw.get("tls_server_hostname"),
            )
        except (KeyError, TypeError) as exc:
            raise GrantError(f"cluster settings: missing or bad field {exc}") from exc


@dataclass(frozen=True)
class Grant:
    """A verified grant. Times are POSIX seconds (UTC)."""

    grant_id: str
    subject: str
    cluster: ClusterSettings
    topics: tuple[str, ...]
    operations: frozenset[OperationKind]
    not_before: float
    expires_at: float
    topic_classes: Mapping[str, frozenset[TopicClass]] = field(default_factory=dict)
    masking: tuple[MaskingRule, ...] = ()
    approval_id: str | None = None
    groups: tuple[str, ...] = ("*",)  # consumer-group / transactional-id patterns
    unmasked: bool = False  # reading unmasked values was allowed by policy and approval
    issuer: str = ""
    audience: str = ""

    def covers_topic(self, topic: str) -> bool:
        """True when the grant names this topic, exactly or by a glob pattern."""
        return any(fnmatch.fnmatchcase(topic, p) for p in self.topics)

    def covers_group(self, group: str) -> bool:
        return any(fnmatch.fnmatchcase(group, p) for p in self.groups)

    def classes_of(self, topic: str) -> frozenset[TopicClass]:
        """The classes of a topic, from every class pattern that matches it."""
        found: set[TopicClass] = set()
        for pattern, classes in self.topic_classes.items():
            if fnmatch.fnmatchcase(topic, pattern):
                found |= classes
        return frozenset(found)

    def masking_for(self, topic: str) -> tuple[MaskingRule, ...]:
        if self.unmasked:
            return ()
        return tuple(r for r in self.masking if r.matches_topic(topic))

    def to_claims(self) -> dict[str, Any]:
        """Registered JWT claims plus the `streamctl` claim; the signer adds iss/aud/iat."""
        return {
            "sub": self.subject,
            "jti": self.grant_id,
            "nbf": int(self.not_before),
            "exp": int(self.expires_at),
            "scope": GRANT_SCOPE,
            GRANT_CLAIM: {
                "cluster": self.cluster.to_claims(),
                "topics": list(self.topics),
                "operations": sorted(op.value for op in self.operations),
                "topic_classes": {
                    t: sorted(c.value for c in cs) for t, cs in self.topic_classes.items()
                },
                "masking": [r.to_claims() for r in self.masking],
                "approval_id": self.approval_id,
                "groups": list(self.groups),
                "unmasked": self.unmasked,
            },
        }

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> Grant:
        """Build a grant from claims whose signature and registered claims were already checked."""
        try:
            body = claims[GRANT_CLAIM]
            ops = frozenset(OperationKind(o) for o in body["operations"])
            if not ops <= GRANTABLE:
                raise GrantError(f"operations: {sorted(ops - GRANTABLE)} cannot be granted")
            return cls(
                grant_id=str(claims["jti"]),
                subject=str(claims["sub"]),
                cluster=ClusterSettings.from_claims(body["cluster"]),
                topics=tuple(str(t) for t in body["topics"]),
                operations=ops,
                not_before=float(claims["nbf"]),
                expires_at=float(claims["exp"]),
                topic_classes={
                    str(t): frozenset(TopicClass(c) for c in cs)
                    for t, cs in body.get("topic_classes", {}).items()
                },
                masking=tuple(MaskingRule.from_claims(r) for r in body.get("masking", ())),
                approval_id=body.get("approval_id"),
                groups=tuple(str(g) for g in body.get("groups", ("*",))),
                unmasked=bool(body.get("unmasked", False)),
                issuer=str(claims.get("iss", "")),
                audience=str(claims.get("aud", "")),
            )
        except GrantError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise GrantError(f"grant claims: missing or bad field {exc}") from exc
