"""Masking rules compiled once per grant: paths parsed, detectors looked up, strategies bound.

`compile_rules` turns the grant's `MaskingRule`s into `CompiledRule`s (any error in the
policy raises MaskingError up front, so the tunnel never starts with a rule it cannot
apply), and `plan_for` groups the rules that match a topic by what they apply to.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

from streamctl.masking.detectors import (
    PRIORITY,
    Detector,
    custom_detector,
    detector_for,
)
from streamctl.masking.errors import MaskingError
from streamctl.masking.paths import WILDCARD, FieldPath, compile_path
from streamctl.masking.strategies import TextMask, ValueMask, text_mask, value_mask
from streamctl.policy.grant import MaskingRule

TARGETS = ("value", "key", "headers")
#: Detector names of the policy file that differ from the built-in ones; the policy's `regex`
#: detector is the rule's `pattern`, compiled below as a custom detector.
POLICY_DETECTOR_NAMES = {"ssn": "us_ssn"}


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """One policy rule, ready to apply."""

    name: str
    rule: MaskingRule
    paths: tuple[FieldPath, ...]
    detectors: tuple[Detector, ...]
    strategy: str
    value_mask: ValueMask
    text_mask: TextMask
    targets: frozenset[str]

    def matches_topic(self, topic: str) -> bool:
        return self.rule.matches_topic(topic)

    def matches_header(self, header_key: str) -> bool:
        """For headers, each `fields` entry is a header-name pattern (glob)."""
        return any(fnmatch.fnmatchcase(header_key, p.text) for p in self.paths)


@dataclass(frozen=True, slots=True)
class FieldRule:
    """A field path and what to do with what it reaches."""

    name: str
    path: FieldPath
    mask: ValueMask
    #: '"key"' a JSON text must hold to contain the path (its last literal key), if any.
    quoted_key: str | None
    #: For paths of object keys only (the common case): the keys leading to the leaf's
    #: parent, and the leaf's key, so the masking loop can walk them inline.
    parents: tuple[str, ...] | None
    leaf: str
    #: True when the path is keys, one wildcard, then the leaf key (`items[*].card`): the
    #: parents lead to the array (or object) whose every item holds the leaf.
    spread: bool = False


def field_rule(name: str, path: FieldPath, mask: ValueMask) -> FieldRule:
    """Precompute what the per-record loop needs to skip or walk a path quickly."""
    steps = path.steps
    keys_only = len(path.literal_keys) == len(steps)
    spread = (
        len(steps) >= 2 and steps[-2] is WILDCARD and type(steps[-1]) is str
        and len(path.literal_keys) == len(steps) - 1
    )
    quoted = f'"{path.literal_keys[-1]}"' if path.literal_keys else None
    if keys_only:
        return FieldRule(name, path, mask, quoted, path.literal_keys[:-1], path.literal_keys[-1])
    if spread:
        return FieldRule(name, path, mask, quoted, path.literal_keys[:-1], path.literal_keys[-1],
                         spread=True)
    return FieldRule(name, path, mask, quoted, None, "")


@dataclass(frozen=True, slots=True)
class DetectorRule:
    """Detectors and how to replace what they find."""

    name: str
    detectors: tuple[Detector, ...]
    strategy: str
    mask: TextMask


@dataclass(frozen=True, slots=True)
class TargetPlan:
    """What to do to one part of a record (value, key, or header values)."""

    fields: tuple[FieldRule, ...]
    detectors: tuple[DetectorRule, ...]

    def __bool__(self) -> bool:
        return bool(self.fields or self.detectors)


@dataclass(frozen=True, slots=True)
class TopicPlan:
    """Everything to apply to the records of one topic."""

    value: TargetPlan
    key: TargetPlan
    header_names: tuple[CompiledRule, ...]  # rules whose fields name headers
    header_values: TargetPlan  # detectors run on every header value
    rule_names: tuple[str, ...]


def compile_rule(rule: MaskingRule, index: int, hash_key: bytes | None) -> CompiledRule:
    """Validate and compile one rule; errors name the rule, never record content."""
    name = rule.name or f"rule{index}"
    unknown_targets = set(rule.apply_to) - set(TARGETS)
    if unknown_targets or not rule.apply_to:
        raise MaskingError(
            f"masking rule {name!r}: apply_to must be among {TARGETS}, got {list(rule.apply_to)}"
        )
    if not (rule.fields or rule.detectors or rule.pattern):
        raise MaskingError(f"masking rule {name!r} names no fields, detectors or pattern")
    if not rule.topics:
        raise MaskingError(f"masking rule {name!r} names no topics")
    paths = tuple(compile_path(f) for f in rule.fields)
    wanted = (POLICY_DETECTOR_NAMES.get(d, d) for d in rule.detectors if d != "regex")
    by_name = {d: detector_for(d) for d in dict.fromkeys(wanted)}
    detectors = tuple(by_name[d] for d in PRIORITY if d in by_name)
    if rule.pattern is not None:
        detectors += (custom_detector(rule.pattern, name),)
    return CompiledRule(
        name=name,
        rule=rule,
        paths=paths,
        detectors=detectors,
        strategy=rule.strategy,
        value_mask=value_mask(rule.strategy, rule.keep_last, hash_key),
        text_mask=text_mask(rule.strategy, rule.keep_last, hash_key),
        targets=frozenset(rule.apply_to),
    )


def compile_rules(rules: Sequence[MaskingRule], hash_key: bytes | None) -> tuple[CompiledRule, ...]:
    """Compile every rule of a grant; duplicate names get their index appended."""
    compiled = [compile_rule(r, i, hash_key) for i, r in enumerate(rules)]
    seen: set[str] = set()
    out = []
    for i, rule in enumerate(compiled):
        if rule.name in seen:
            rule = CompiledRule(f"{rule.name}#{i}", rule.rule, rule.paths, rule.detectors,
                                rule.strategy, rule.value_mask, rule.text_mask, rule.targets)
        seen.add(rule.name)
        out.append(rule)
    return tuple(out)


def _target_plan(rules: Sequence[CompiledRule], target: str) -> TargetPlan:
    fields = tuple(
        field_rule(r.name, p, r.value_mask)
        for r in rules if target in r.targets for p in r.paths
    )
    detectors = tuple(
        DetectorRule(r.name, r.detectors, r.strategy, r.text_mask)
        for r in rules if target in r.targets and r.detectors
    )
    return TargetPlan(fields, detectors)


def plan_for(rules: Sequence[CompiledRule], topic: str) -> TopicPlan | None:
    """The plan for a topic, or None when no rule matches it (the byte-for-byte path)."""
    matching = [r for r in rules if r.matches_topic(topic)]
    if not matching:
        return None
    headers = [r for r in matching if "headers" in r.targets]
    return TopicPlan(
        value=_target_plan(matching, "value"),
        key=_target_plan(matching, "key"),
        header_names=tuple(r for r in headers if r.paths),
        header_values=TargetPlan((), _target_plan(headers, "headers").detectors),
        rule_names=tuple(r.name for r in matching),
    )
