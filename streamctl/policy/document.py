"""The policy file: who holds which role, what each role may ask for, and the guardrails.

A YAML document with roles (members + topic/operation rules + TTL caps), topic
classes (high-value, immutable, pii), masking rules, approval settings per
class, and the clusters grants are issued for. `load_policy` validates it and
names the file, the field and the problem; `PolicyDocument.explain` says which
rule allows or refuses one operation on one topic, and why. Pure: no I/O other
than reading the file (and a cluster's CA file) in `load_policy`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from streamctl.kafka.operations import GRANTABLE, OperationKind
from streamctl.policy.grant import ClusterSettings, MaskingRule, TopicClass

MASKING_STRATEGIES = ("redact", "keep_last", "hash", "null", "drop")
MASKING_DETECTORS = ("email", "card", "iban", "ssn", "phone", "ipv4", "ipv6", "regex")
MASKING_TARGETS = ("value", "key", "headers")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("OAUTHBEARER", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
#: Operations a high-value topic guards behind an approval.
APPROVAL_OPERATIONS = frozenset({OperationKind.WRITE})
#: Operations an immutable topic never allows.
IMMUTABLE_REFUSES = frozenset({OperationKind.DELETE, OperationKind.ALTER})
_GLOB = re.compile(r"[*?\[]")


class PolicyError(ValueError):
    """The policy file is invalid; `problems` lists each as 'file: field: what is wrong'."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def pattern_covers(rule_pattern: str, requested: str) -> bool:
    """True when every topic the requested name or pattern can match is matched by the rule."""
    if not _GLOB.search(requested):
        return fnmatch.fnmatchcase(requested, rule_pattern)
    if rule_pattern == requested:
        return True
    prefix = rule_pattern[:-1]
    return rule_pattern.endswith("*") and not _GLOB.search(prefix) and requested.startswith(prefix)


def _may_overlap(class_pattern: str, requested: str) -> bool:
    """Conservative: could the requested topic (or pattern) match a topic of this class?"""
    if fnmatch.fnmatchcase(requested, class_pattern):
        return True
    if not _GLOB.search(requested):
        return False
    return fnmatch.fnmatchcase(class_pattern, requested) or pattern_covers(requested, class_pattern)


@dataclass(frozen=True)
class RoleRule:
    """One entry of a role's `grants`: topics and operations it may request, with a TTL cap."""

    where: str
    topics: tuple[str, ...]
    operations: frozenset[OperationKind]
    max_ttl_seconds: int | None = None
    groups: tuple[str, ...] = ("*",)

    def allows(self, topic: str, op: OperationKind) -> bool:
        return op in self.operations and any(pattern_covers(p, topic) for p in self.topics)


@dataclass(frozen=True)
class Role:
    """A role: who holds it and what its holders may request."""

    name: str
    members: tuple[str, ...]
    rules: tuple[RoleRule, ...]
    max_ttl_seconds: int | None = None


@dataclass(frozen=True)
class ClassRule:
    """Topics (names or patterns) and the classes the policy puts on them."""

    where: str
    topics: tuple[str, ...]
    classes: frozenset[TopicClass]


@dataclass(frozen=True)
class ApprovalSettings:
    """How approvals work for one topic class (used by the approvals service)."""

    topic_class: TopicClass
    approver_roles: tuple[str, ...]
    threshold: int = 1
    reason_required: bool = True
    pending_ttl_seconds: int = 3600
    max_window_seconds: int = 8 * 3600


@dataclass(frozen=True)
class ClusterConfig:
    """A cluster grants can be issued for, with the audience its brokers expect."""

    name: str
    bootstrap: str
    audience: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    tls_ca: str | None = None
    tls_server_hostname: str | None = None

    def settings(self) -> ClusterSettings:
        """The connection settings carried inside a grant."""
        return ClusterSettings(
            name=self.name,
            bootstrap=self.bootstrap,
            security_protocol=self.security_protocol,
            sasl_mechanism=self.sasl_mechanism,
            tls_ca=self.tls_ca,
            tls_server_hostname=self.tls_server_hostname,
        )


@dataclass(frozen=True)
class Explanation:
    """Why one operation on one topic is allowed or refused for a subject."""

    allowed: bool
    reason: str
    rule: str | None = None
    needs_approval: bool = False
    classes: frozenset[TopicClass] = frozenset()
    max_ttl_seconds: int | None = None
    roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class PolicyDocument:
    """A validated policy file."""

    path: str
    roles: Mapping[str, Role]
    topic_classes: tuple[ClassRule, ...]
    masking: tuple[MaskingRule, ...]
    approvals: Mapping[TopicClass, ApprovalSettings]
    clusters: Mapping[str, ClusterConfig]
    default_cluster: str
    default_ttl_seconds: int = 3600
    max_ttl_seconds: int = 8 * 3600
    reason_required: bool = False
    extra_members: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def roles_of(self, subject: str) -> tuple[str, ...]:
        """The roles the policy gives a subject by name."""
        return tuple(sorted(r.name for r in self.roles.values() if subject in r.members))

    def classes_of(self, topic: str) -> frozenset[TopicClass]:
        """Classes of a topic, or of any topic a requested pattern may reach."""
        found: set[TopicClass] = set()
        for rule in self.topic_classes:
            if any(_may_overlap(p, topic) for p in rule.topics):
                found |= rule.classes
        return frozenset(found)

    def class_map(self) -> dict[str, frozenset[TopicClass]]:
        """Every class pattern, as a grant carries it for the tunnel."""
        out: dict[str, set[TopicClass]] = {}
        for rule in self.topic_classes:
            for p in rule.topics:
                out.setdefault(p, set()).update(rule.classes)
        return {p: frozenset(cs) for p, cs in out.items()}

    def masking_for(self, topics: Iterable[str]) -> tuple[MaskingRule, ...]:
        """Masking rules that may apply to any of the topics (patterns included)."""
        wanted = list(topics)
        return tuple(
            r for r in self.masking if any(_may_overlap(p, t) for p in r.topics for t in wanted)
        )

    def explain(
        self, subject: str, topic: str, op: str, roles: Iterable[str] | None = None
    ) -> Explanation:
        """Which rule allows or refuses `op` on `topic` for `subject` (holding `roles` if given)."""
        held = tuple(sorted(set(self.roles_of(subject)) | set(roles or ())))
        try:
            kind = OperationKind(op)
        except ValueError:
            return Explanation(False, f"unknown operation {op!r}", roles=held)
        if kind not in GRANTABLE:
            allowed_ops = ", ".join(sorted(o.value for o in GRANTABLE))
            return Explanation(
                False, f"operation {op!r} cannot be granted (grantable: {allowed_ops})", roles=held
            )
        classes = self.classes_of(topic)
        if TopicClass.IMMUTABLE in classes and kind in IMMUTABLE_REFUSES:
            where = next(
                r.where
                for r in self.topic_classes
                if TopicClass.IMMUTABLE in r.classes
                and any(_may_overlap(p, topic) for p in r.topics)
            )
            return Explanation(
                False,
                f"{topic} is immutable ({where}): it can never be deleted or altered",
                rule=where,
                classes=classes,
                roles=held,
            )
        if not held:
            return Explanation(False, f"{subject} holds no role in {self.path}", classes=classes)
        for name in held:
            role = self.roles.get(name)
            if role is None:
                continue
            for rule in role.rules:
                if not rule.allows(topic, kind):
                    continue
                caps = [
                    c
                    for c in (rule.max_ttl_seconds, role.max_ttl_seconds, self.max_ttl_seconds)
                    if c is not None
                ]
                needs = TopicClass.HIGH_VALUE in classes and kind in APPROVAL_OPERATIONS
                reason = f"{rule.where} allows {kind.value} on {topic}"
                if needs:
                    reason += f"; {topic} is high-value: {kind.value}s need an approval"
                return Explanation(
                    True,
                    reason,
                    rule=rule.where,
                    needs_approval=needs,
                    classes=classes,
                    max_ttl_seconds=min(caps),
                    roles=held,
                    groups=rule.groups,
                )
        return Explanation(
            False,
            f"no rule of role(s) {', '.join(held)} allows {kind.value} on {topic}",
            classes=classes,
            roles=held,
        )


class _Reader:
    """Collects problems while walking the raw YAML, so `policy check` can list them all."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[str] = []

    def fail(self, where: str, problem: str) -> None:
        self.problems.append(f"{self.path}: {where}: {problem}")

    def mapping(self, raw: Any, where: str, allowed: Iterable[str]) -> dict[str, Any]:
        if not isinstance(raw, dict):
            self.fail(where, f"must be a mapping, got {type(raw).__name__}")
            return {}
        for key in raw:
            if key not in allowed:
                self.fail(f"{where}.{key}", f"unknown field (allowed: {', '.join(allowed)})")
        return raw

    def strings(self, raw: Any, where: str, required: bool = True) -> tuple[str, ...]:
        if isinstance(raw, str):
            raw = [raw]
        if raw is None and not required:
            return ()
        if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
            self.fail(where, "must be a list of non-empty strings")
            return ()
        if required and not raw:
            self.fail(where, "must not be empty")
        return tuple(raw)

    def integer(self, raw: Any, where: str, default: int | None) -> int | None:
        if raw is None:
            return default
        if not isinstance(raw, int) or isinstance(raw, bool) or raw <= 0:
            self.fail(where, f"must be a positive integer, got {raw!r}")
            return default
        return raw

    def boolean(self, raw: Any, where: str, default: bool) -> bool:
        if raw is None:
            return default
        if not isinstance(raw, bool):
            self.fail(where, f"must be true or false, got {raw!r}")
            return default
        return raw

    def operations(self, raw: Any, where: str) -> frozenset[OperationKind]:
        ops: set[OperationKind] = set()
        for i, name in enumerate(self.strings(raw, where)):
            try:
                op = OperationKind(name)
            except ValueError:
                self.fail(f"{where}[{i}]", f"unknown operation {name!r}")
                continue
            if op not in GRANTABLE:
                grantable = ", ".join(sorted(o.value for o in GRANTABLE))
                self.fail(f"{where}[{i}]", f"{name!r} cannot be granted (grantable: {grantable})")
            ops.add(op)
        return frozenset(ops)

    def topic_class(self, name: Any, where: str) -> TopicClass | None:
        try:
            return TopicClass(name)
        except ValueError:
            known = ", ".join(c.value for c in TopicClass)
            self.fail(where, f"unknown topic class {name!r} (known: {known})")
            return None


def _read_roles(r: _Reader, raw: Any) -> dict[str, Role]:
    roles: dict[str, Role] = {}
    for name, body in r.mapping(raw, "roles", raw.keys() if isinstance(raw, dict) else ()).items():
        where = f"roles.{name}"
        b = r.mapping(body, where, ("members", "grants", "max_ttl_seconds", "description"))
        rules = []
        grants_raw = b.get("grants", [])
        if not isinstance(grants_raw, list):
            r.fail(f"{where}.grants", "must be a list")
            grants_raw = []
        for i, g in enumerate(grants_raw):
            gw = f"{where}.grants[{i}]"
            gb = r.mapping(g, gw, ("topics", "operations", "max_ttl_seconds", "groups"))
            rules.append(
                RoleRule(
                    where=gw,
                    topics=r.strings(gb.get("topics"), f"{gw}.topics"),
                    operations=r.operations(gb.get("operations"), f"{gw}.operations"),
                    max_ttl_seconds=r.integer(
                        gb.get("max_ttl_seconds"), f"{gw}.max_ttl_seconds", None
                    ),
                    groups=r.strings(gb.get("groups", ["*"]), f"{gw}.groups"),
                )
            )
        roles[str(name)] = Role(
            name=str(name),
            members=r.strings(b.get("members"), f"{where}.members", required=False),
            rules=tuple(rules),
            max_ttl_seconds=r.integer(b.get("max_ttl_seconds"), f"{where}.max_ttl_seconds", None),
        )
    return roles


def _read_classes(r: _Reader, raw: Any) -> tuple[ClassRule, ...]:
    if not isinstance(raw, list):
        r.fail("topic_classes", "must be a list of {topics, classes}")
        return ()
    out = []
    for i, item in enumerate(raw):
        where = f"topic_classes[{i}]"
        b = r.mapping(item, where, ("topics", "classes"))
        classes = {
            c
            for j, name in enumerate(r.strings(b.get("classes"), f"{where}.classes"))
            if (c := r.topic_class(name, f"{where}.classes[{j}]")) is not None
        }
        out.append(
            ClassRule(where, r.strings(b.get("topics"), f"{where}.topics"), frozenset(classes))
        )
    return tuple(out)


def _read_masking(r: _Reader, raw: Any) -> tuple[MaskingRule, ...]:
    if not isinstance(raw, list):
        r.fail("masking", "must be a list of rules")
        return ()
    out = []
    for i, item in enumerate(raw):
        where = f"masking[{i}]"
        fields = (
            "name",
            "topics",
            "fields",
            "detectors",
            "strategy",
            "keep_last",
            "pattern",
            "apply_to",
        )
        b = r.mapping(item, where, fields)
        strategy = b.get("strategy", "redact")
        if strategy not in MASKING_STRATEGIES:
            r.fail(
                f"{where}.strategy",
                f"unknown strategy {strategy!r} (known: {', '.join(MASKING_STRATEGIES)})",
            )
        keep_last = r.integer(b.get("keep_last"), f"{where}.keep_last", None)
        if strategy == "keep_last" and keep_last is None:
            r.fail(f"{where}.keep_last", "is required with strategy keep_last")
        detectors = r.strings(b.get("detectors"), f"{where}.detectors", required=False)
        for j, d in enumerate(detectors):
            if d not in MASKING_DETECTORS:
                r.fail(
                    f"{where}.detectors[{j}]",
                    f"unknown detector {d!r} (known: {', '.join(MASKING_DETECTORS)})",
                )
        pattern = b.get("pattern")
        if pattern is not None:
            if not isinstance(pattern, str):
                r.fail(f"{where}.pattern", "must be a regular expression string")
                pattern = None
            else:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    r.fail(f"{where}.pattern", f"not a valid regular expression ({exc})")
        if "regex" in detectors and pattern is None:
            r.fail(f"{where}.pattern", "is required with the regex detector")
        field_paths = r.strings(b.get("fields"), f"{where}.fields", required=False)
        if not field_paths and not detectors:
            r.fail(where, "needs fields or detectors (or both)")
        apply_to = r.strings(b.get("apply_to", ["value"]), f"{where}.apply_to")
        for j, t in enumerate(apply_to):
            if t not in MASKING_TARGETS:
                r.fail(f"{where}.apply_to[{j}]", f"must be one of {', '.join(MASKING_TARGETS)}")
        name = b.get("name", f"rule-{i}")
        out.append(
            MaskingRule(
                name=str(name),
                topics=r.strings(b.get("topics"), f"{where}.topics"),
                fields=field_paths,
                detectors=detectors,
                strategy=str(strategy),
                keep_last=keep_last,
                pattern=pattern,
                apply_to=apply_to,
            )
        )
    return tuple(out)


def _read_approvals(
    r: _Reader, raw: Any, roles: Mapping[str, Role]
) -> dict[TopicClass, ApprovalSettings]:
    out: dict[TopicClass, ApprovalSettings] = {}
    for name, body in r.mapping(raw, "approvals", [c.value for c in TopicClass]).items():
        where = f"approvals.{name}"
        tc = r.topic_class(name, where)
        b = r.mapping(
            body,
            where,
            (
                "approver_roles",
                "threshold",
                "reason_required",
                "pending_ttl_seconds",
                "max_window_seconds",
            ),
        )
        approvers = r.strings(b.get("approver_roles"), f"{where}.approver_roles")
        for j, role in enumerate(approvers):
            if role not in roles:
                r.fail(f"{where}.approver_roles[{j}]", f"no role named {role!r} in roles")
        if tc is None:
            continue
        out[tc] = ApprovalSettings(
            topic_class=tc,
            approver_roles=approvers,
            threshold=r.integer(b.get("threshold"), f"{where}.threshold", 1) or 1,
            reason_required=r.boolean(b.get("reason_required"), f"{where}.reason_required", True),
            pending_ttl_seconds=r.integer(
                b.get("pending_ttl_seconds"), f"{where}.pending_ttl_seconds", 3600
            )
            or 3600,
            max_window_seconds=r.integer(
                b.get("max_window_seconds"), f"{where}.max_window_seconds", 8 * 3600
            )
            or 8 * 3600,
        )
    return out


def _read_clusters(r: _Reader, raw: Any, base: Path | None) -> dict[str, ClusterConfig]:
    out: dict[str, ClusterConfig] = {}
    names = raw.keys() if isinstance(raw, dict) else ()
    for name, body in r.mapping(raw, "clusters", names).items():
        where = f"clusters.{name}"
        b = r.mapping(
            body,
            where,
            (
                "bootstrap",
                "audience",
                "security_protocol",
                "sasl_mechanism",
                "tls_ca_file",
                "tls_server_hostname",
                "default",
            ),
        )
        bootstrap = b.get("bootstrap")
        if not isinstance(bootstrap, str) or not bootstrap:
            r.fail(f"{where}.bootstrap", "is required: host:port[,host:port...]")
            bootstrap = ""
        protocol = b.get("security_protocol", "PLAINTEXT")
        if protocol not in SECURITY_PROTOCOLS:
            r.fail(f"{where}.security_protocol", f"must be one of {', '.join(SECURITY_PROTOCOLS)}")
        mechanism = b.get("sasl_mechanism")
        if mechanism is not None and mechanism not in SASL_MECHANISMS:
            r.fail(f"{where}.sasl_mechanism", f"must be one of {', '.join(SASL_MECHANISMS)}")
        if str(protocol).startswith("SASL") and mechanism is None:
            r.fail(f"{where}.sasl_mechanism", f"is required with {protocol}")
        tls_ca = None
        ca_file = b.get("tls_ca_file")
        if ca_file is not None:
            ca_path = Path(str(ca_file)) if base is None else base / str(ca_file)
            try:
                tls_ca = ca_path.read_text(encoding="utf-8")
            except OSError as exc:
                r.fail(f"{where}.tls_ca_file", f"cannot read {ca_path} ({exc.strerror})")
        audience = b.get("audience", str(name))
        if not isinstance(audience, str) or not audience:
            r.fail(f"{where}.audience", "must be a non-empty string")
            audience = str(name)
        hostname = b.get("tls_server_hostname")
        out[str(name)] = ClusterConfig(
            name=str(name),
            bootstrap=bootstrap,
            audience=audience,
            security_protocol=str(protocol),
            sasl_mechanism=str(mechanism) if mechanism is not None else None,
            tls_ca=tls_ca,
            tls_server_hostname=str(hostname) if hostname is not None else None,
        )
    return out


TOP_LEVEL = (
    "version",
    "ttl",
    "reason_required",
    "roles",
    "topic_classes",
    "masking",
    "approvals",
    "clusters",
)


def parse_policy(raw: Any, path: str, base: Path | None = None) -> PolicyDocument:
    """Validate a parsed YAML policy; raises PolicyError listing every problem found."""
    r = _Reader(path)
    top = r.mapping(raw, "(top level)", TOP_LEVEL)
    if r.problems and not top:
        raise PolicyError(r.problems)
    if top.get("version", 1) != 1:
        r.fail("version", f"unsupported policy version {top.get('version')!r} (expected 1)")
    ttl = r.mapping(top.get("ttl", {}), "ttl", ("default_seconds", "max_seconds"))
    max_ttl = r.integer(ttl.get("max_seconds"), "ttl.max_seconds", 8 * 3600) or 8 * 3600
    default_ttl = r.integer(ttl.get("default_seconds"), "ttl.default_seconds", min(3600, max_ttl))
    if default_ttl is not None and default_ttl > max_ttl:
        r.fail("ttl.default_seconds", f"is {default_ttl}, above ttl.max_seconds ({max_ttl})")
    roles = _read_roles(r, top.get("roles", {}))
    if not roles:
        r.fail("roles", "at least one role is needed")
    classes = _read_classes(r, top.get("topic_classes", []))
    masking = _read_masking(r, top.get("masking", []))
    approvals = _read_approvals(r, top.get("approvals", {}), roles)
    clusters = _read_clusters(r, top.get("clusters", {}), base)
    if not clusters:
        r.fail("clusters", "at least one cluster is needed")
    defaults = [
        n
        for n, body in (top.get("clusters") or {}).items()
        if isinstance(body, dict) and body.get("default") is True
    ]
    if len(defaults) > 1:
        r.fail("clusters", f"only one cluster can be the default, got {', '.join(defaults)}")
    default_cluster = defaults[0] if defaults else next(iter(clusters), "")
    if any(TopicClass.HIGH_VALUE in c.classes for c in classes) and (
        TopicClass.HIGH_VALUE not in approvals
    ):
        r.fail(
            "approvals.high-value", "topics are classed high-value but no approver roles are set"
        )
    if r.problems:
        raise PolicyError(r.problems)
    return PolicyDocument(
        path=path,
        roles=roles,
        topic_classes=classes,
        masking=masking,
        approvals=approvals,
        clusters=clusters,
        default_cluster=str(default_cluster),
        default_ttl_seconds=default_ttl or min(3600, max_ttl),
        max_ttl_seconds=max_ttl,
        reason_required=r.boolean(top.get("reason_required"), "reason_required", False),
    )


def load_policy(path: Path) -> PolicyDocument:
    """Read and validate a policy file; every error names this file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError([f"{path}: cannot read the file ({exc.strerror})"]) from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError([f"{path}: not valid YAML ({exc})"]) from exc
    return parse_policy(raw, str(path), path.resolve().parent)
