"""Field paths: parsing, wildcards, indexes, drop."""

from __future__ import annotations

import pytest

from streamctl.masking.errors import MaskingError
from streamctl.masking.paths import DROP, WILDCARD, compile_path


def test_parsing() -> None:
    assert compile_path("customer.email").steps == ("customer", "email")
    assert compile_path("items[*].card").steps == ("items", WILDCARD, "card")
    assert compile_path("$.a[2].b").steps == ("a", 2, "b")
    assert compile_path("*.ssn").steps == (WILDCARD, "ssn")
    assert compile_path('meta["x.y"].z').steps == ("meta", "x.y", "z")
    assert compile_path("items[*].card").literal_keys == ("items", "card")


@pytest.mark.parametrize("bad", ["", "a..b", "a[", "a[x]", "$", "a]"])
def test_malformed_paths_are_policy_errors(bad: str) -> None:
    with pytest.raises(MaskingError):
        compile_path(bad)


def test_apply_replaces_every_reached_value() -> None:
    doc = {"items": [{"card": "1"}, {"card": "2"}, {"sku": 3}], "customer": {"email": "e"}}
    assert compile_path("items[*].card").apply(doc, lambda v: "X") == 2
    assert doc["items"] == [{"card": "X"}, {"card": "X"}, {"sku": 3}]
    assert compile_path("customer.email").apply(doc, lambda v: None) == 1
    assert doc["customer"] == {"email": None}
    assert compile_path("missing.path").apply(doc, lambda v: "X") == 0
    assert compile_path("items[-1].sku").apply(doc, lambda v: v * 2) == 1
    assert doc["items"][2] == {"sku": 6}


def test_apply_drop_removes_fields_and_items() -> None:
    doc = {"a": [1, 2, 3], "b": {"c": 1, "d": 2}}
    assert compile_path("a[*]").apply(doc, lambda v: DROP) == 3
    assert compile_path("b.*").apply(doc, lambda v: DROP) == 2
    assert doc == {"a": [], "b": {}}


def test_wrong_shapes_are_skipped() -> None:
    doc = {"items": "not-a-list", "n": 5}
    assert compile_path("items[*].card").apply(doc, lambda v: "X") == 0
    assert compile_path("n.deeper").apply(doc, lambda v: "X") == 0
    assert compile_path("[0].a").apply([{"a": 1}], lambda v: "X") == 1
