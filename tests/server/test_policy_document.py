"""The policy file model: validation names file, field and problem; explain says which rule."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from streamctl.policy.document import PolicyError, load_policy, pattern_covers
from streamctl.policy.grant import TopicClass
from streamctl.server.starter import STARTER_POLICY


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def test_starter_policy_loads(tmp_path: Path) -> None:
    doc = load_policy(_write(tmp_path, STARTER_POLICY))
    assert set(doc.roles) == {"engineer", "approver"}
    assert doc.roles_of("alice") == ("engineer",) and doc.roles_of("bob") == ("approver",)
    assert doc.default_cluster == "local" and doc.clusters["local"].audience == "kafka-local"
    assert doc.approvals[TopicClass.HIGH_VALUE].approver_roles == ("approver",)
    assert doc.classes_of("payments") == {TopicClass.HIGH_VALUE}
    assert [r.name for r in doc.masking_for(["orders"])] == ["customer-email", "card-numbers"]
    assert doc.masking_for(["payments"]) == ()


def test_explain_names_the_rule_and_the_guardrail(tmp_path: Path) -> None:
    doc = load_policy(_write(tmp_path, STARTER_POLICY))
    read = doc.explain("alice", "orders", "read")
    assert read.allowed and read.rule == "roles.engineer.grants[0]" and not read.needs_approval
    assert read.max_ttl_seconds == 14400
    write = doc.explain("alice", "payments", "write")
    assert write.allowed and write.needs_approval and write.rule == "roles.engineer.grants[1]"
    assert "high-value" in write.reason and write.max_ttl_seconds == 3600
    delete = doc.explain("alice", "audit-events", "delete")
    assert not delete.allowed and delete.rule == "topic_classes[1]"
    assert "immutable" in delete.reason
    nobody = doc.explain("mallory", "orders", "read")
    assert not nobody.allowed and "holds no role" in nobody.reason
    outside = doc.explain("bob", "orders", "write")
    assert not outside.allowed and "no rule of role(s) approver allows write on orders" in outside.reason
    mapped = doc.explain("carol", "orders", "read", roles=["engineer"])
    assert mapped.allowed
    assert not doc.explain("alice", "orders", "cluster").allowed
    assert not doc.explain("alice", "orders", "fly").allowed


def test_pattern_covers_is_conservative() -> None:
    assert pattern_covers("orders.*", "orders.eu")
    assert pattern_covers("orders*", "orders.*")
    assert pattern_covers("orders.*", "orders.*")
    assert not pattern_covers("orders", "orders*")
    assert not pattern_covers("orders.*", "*")
    assert not pattern_covers("a?c", "a*c")
    assert not pattern_covers("*-prod", "*")


def test_every_problem_names_file_and_field(tmp_path: Path) -> None:
    raw = yaml.safe_load(STARTER_POLICY)
    raw["roles"]["engineer"]["grants"][0]["operations"] = ["read", "fly", "cluster"]
    raw["roles"]["engineer"]["grants"][1]["topic"] = ["x"]
    raw["topic_classes"][0]["classes"] = ["precious"]
    raw["masking"][0]["strategy"] = "scramble"
    raw["masking"][1]["pattern"] = "([unclosed"
    raw["approvals"]["high-value"]["approver_roles"] = ["boss"]
    raw["clusters"]["local"]["security_protocol"] = "SASL_SSL"
    raw["ttl"]["default_seconds"] = 99999
    raw["extra"] = 1
    path = _write(tmp_path, yaml.safe_dump(raw))
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    problems = info.value.problems
    expected = [
        "roles.engineer.grants[0].operations[1]: unknown operation 'fly'",
        "roles.engineer.grants[0].operations[2]: 'cluster' cannot be granted",
        "roles.engineer.grants[1].topic: unknown field",
        "topic_classes[0].classes[0]: unknown topic class 'precious'",
        "masking[0].strategy: unknown strategy 'scramble'",
        "masking[1].pattern: not a valid regular expression",
        "approvals.high-value.approver_roles[0]: no role named 'boss'",
        "clusters.local.sasl_mechanism: is required with SASL_SSL",
        "ttl.default_seconds: is 99999, above ttl.max_seconds (28800)",
        "(top level).extra: unknown field",
    ]
    for words in expected:
        assert any(p.startswith(f"{path}: ") and words in p for p in problems), (words, problems)


def test_unreadable_and_non_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read the file"):
        load_policy(tmp_path / "missing.yaml")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(_write(tmp_path, "roles: [unclosed"))
    with pytest.raises(PolicyError, match="must be a mapping"):
        load_policy(_write(tmp_path, "- a list"))
