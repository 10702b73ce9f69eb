"""The specialised payload mask (object-key paths, no detectors) equals the general one.

`payload_mask` takes a shortcut for the hot case; these inputs cover where the shortcut
hands back to `mask_payload` (escapes, whitespace, text, broken JSON, binary) and where it
works alone (nested keys, arrays of objects, drop/null, absent paths), and check both give
identical bytes and identical counts.
"""

from __future__ import annotations

import pytest

from streamctl.masking import GrantMasker
from streamctl.masking.payload import mask_payload, payload_mask
from tests.masking.grants import SECRET, grant_with, rule

PAYLOADS = [
    b'{"customer":{"email":"a@b.example","ssn":"123-45-6789"},"items":[{"card":"4111"}]}',
    b'{"customer":{"email":"a@b.example"},"items":{"x":{"card":"4111111111111111"}}}',
    b'{"items":[{"card":1234567},{"card":null},{"sku":"no card"},"card",[{"card":"x"}]]}',
    b'[{"customer":{"email":"top level array"}}]',
    b'{"customer":"email"}',
    b'{"note":"the word \\"email\\" in text","customer":{"email":"x@y.example"}}',
    b'{"customer":{"em\\u0061il":"escaped key"}}',
    b'  {"customer":{"email":"leading space"}}',
    b'\xef\xbb\xbf{"customer":{"email":"bom"}}',
    b'{"customer":{"email":"broken"',
    b'{"customer":{"email":NaN}}',
    b'{"customer":{"email":"x","email":"duplicate key"}}',
    b"plain text with email in it",
    b"\xff\xfe binary",
    b"",
    b'{"customer":{"email":"\xc3\xa9t\xc3\xa9@example.com"},"items":[]}',
]


@pytest.mark.parametrize("strategy", ["redact", "keep_last", "hash", "null", "drop"])
def test_specialised_mask_matches_general(strategy: str) -> None:
    masker = GrantMasker(grant_with(
        rule(name="email", fields=("customer.email",), strategy=strategy, keep_last=4),
        rule(name="card", fields=("items[*].card",), strategy=strategy, keep_last=4),
    ), SECRET)
    plan = masker._plan("orders")
    assert plan is not None
    fast = payload_mask(plan.value)
    assert fast.__name__ == "keys_only"  # the shortcut is really in use for this plan
    for raw in PAYLOADS:
        general_counts: dict[str, int] = {}
        fast_counts: dict[str, int] = {}
        expected = mask_payload(raw, plan.value, general_counts)
        got = fast(raw, fast_counts)
        assert got == expected, raw
        assert fast_counts == general_counts, raw
        assert (got is raw) == (expected is raw), raw


def test_plans_with_detectors_use_the_general_path() -> None:
    masker = GrantMasker(grant_with(
        rule(name="email", fields=("customer.email",), strategy="redact"),
        rule(name="anywhere", detectors=("email",), strategy="redact"),
    ), SECRET)
    plan = masker._plan("orders")
    assert plan is not None
    assert payload_mask(plan.value).__name__ == "general"
    counts: dict[str, int] = {}
    out = payload_mask(plan.value)(b'{"note":"write to bob@example.com"}', counts)
    assert b"bob@example.com" not in out
    assert counts["anywhere"] == 1


DUPLICATES = [
    # the parser keeps the last "customer", which has no email; a first-wins reader would
    # find the first one's e-mail if the original bytes went out
    b'{"customer":{"email":"first@dup.example"},"customer":{}}',
    b'{"customer":{"email":"first@dup.example"},"customer":"gone"}',
    b'{"items":[{"card":"4111111111111111"}],"items":[]}',
    b'[{"customer":{"email":"first@dup.example"},"customer":null}]',
]


@pytest.mark.parametrize("raw", DUPLICATES)
@pytest.mark.parametrize("shortcut", [True, False])
def test_a_duplicate_key_cannot_carry_an_unmasked_value_out(raw: bytes, shortcut: bool) -> None:
    masker = GrantMasker(grant_with(
        rule(name="email", fields=("customer.email",), strategy="redact"),
        rule(name="card", fields=("items[*].card",), strategy="redact"),
    ), SECRET)
    plan = masker._plan("orders")
    assert plan is not None
    mask = payload_mask(plan.value) if shortcut else (
        lambda value, counts: mask_payload(value, plan.value, counts))
    out = mask(raw, {})
    assert b"first@dup.example" not in out
    assert b"4111111111111111" not in out


def test_a_document_without_any_rule_key_keeps_its_bytes() -> None:
    masker = GrantMasker(grant_with(
        rule(name="email", fields=("customer.email",), strategy="redact")), SECRET)
    plan = masker._plan("orders")
    assert plan is not None
    raw = b'{ "order" : 1,  "sku" : "A-1" }'
    assert payload_mask(plan.value)(raw, {}) is raw
    assert mask_payload(raw, plan.value, {}) is raw
