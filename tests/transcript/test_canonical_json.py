"""canonical_json's digest-list fast path writes exactly the bytes json.dumps writes."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streamctl.transcript.events import _with_plain_strings, canonical_json


def plain(event: dict[str, Any]) -> bytes:
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8),
                    st.floats(allow_nan=False, allow_infinity=False))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8)
# Hex digests (the common case), then strings needing escapes, then non-strings.
digest_items = st.one_of(
    st.binary(max_size=8).map(lambda b: hashlib.sha256(b).hexdigest()),
    st.text(max_size=6),
    st.sampled_from(['"', "\\", "\x00", "\x7f", "é", "\U0001f600", "\u0000"]),
    scalars,
)


@settings(max_examples=300, deadline=None)
@given(fields=st.dictionaries(st.text(max_size=10), values, max_size=6),
       digests=st.lists(digest_items, min_size=0, max_size=40))
def test_fast_path_equals_json_dumps(fields: dict[str, Any], digests: list[Any]) -> None:
    event = dict(fields, digests=digests)
    assert canonical_json(event) == plain(event)


def test_a_nested_digests_key_does_not_confuse_the_splice() -> None:
    hexes = [hashlib.sha256(b"%d" % i).hexdigest() for i in range(20)]
    event = {"a": {"digests": ["\x00"]}, "digests": hexes, "z": [{"digests": ["\x00"]}]}
    assert canonical_json(event) == plain(event)


def test_a_long_digest_list_takes_the_fast_path_and_is_exact() -> None:
    hexes = [hashlib.sha256(b"%d" % i).hexdigest() for i in range(256)]
    event = {"bytes": 1, "conn": "c1", "digests": hexes, "topic": "orders", "type": "produced"}
    assert canonical_json(event) == plain(event)


@settings(max_examples=200, deadline=None)
@given(fields=st.dictionaries(st.text(max_size=10), values, max_size=6),
       seeds=st.lists(st.binary(max_size=4), min_size=16, max_size=40))
def test_hex_digest_lists_are_spliced_exactly(fields: dict[str, Any], seeds: list[bytes]) -> None:
    hexes = [hashlib.sha256(s).hexdigest() for s in seeds]
    event = dict(fields, digests=hexes)
    spliced = _with_plain_strings(event, "digests", hexes)
    assert spliced is None or spliced == plain(event)
    assert canonical_json(event) == plain(event)
    if not any("digests" in json.dumps(v) for v in fields.values()):
        assert spliced is not None  # the fast path is taken when nothing can be confused
