"""Hash chain: building, verifying, and naming the first bad sequence number on tampering."""

from __future__ import annotations

import copy
import itertools

from streamctl.transcript.chain import HashChain, chain_head, event_hash, link_of, verify_chain
from streamctl.transcript.events import ZERO_HASH, canonical_json, record_digest


def make_events(n: int = 10) -> list[dict[str, object]]:
    chain = HashChain()
    events = [chain.append("session_start", 1000.0, {"subject": "alice", "grant_id": "g1"})]
    for i in range(1, n):
        events.append(chain.append("request", 1000.0 + i, {"conn": "c1", "api_key": 0, "i": i}))
    return events


def test_canonical_json_is_sorted_compact_ascii() -> None:
    assert canonical_json({"b": 1, "a": [1, "é"]}) == b'{"a":[1,"\\u00e9"],"b":1}'


def test_chain_links_and_verifies() -> None:
    events = make_events()
    assert events[0]["prev"] == ZERO_HASH
    for before, after in itertools.pairwise(events):
        assert after["prev"] == link_of(before)
        assert after["seq"] == before["seq"] + 1  # type: ignore[operator]
    assert all(e["hash"] == event_hash(e) for e in events)
    assert verify_chain(events) is None
    assert verify_chain([]) is None


def test_edited_event_is_named() -> None:
    events = make_events()
    events[3]["conn"] = "c2"
    assert verify_chain(events) == 3


def test_edited_event_with_recomputed_hash_breaks_the_next_link() -> None:
    events = make_events()
    events[3]["conn"] = "c2"
    events[3]["hash"] = event_hash(events[3])
    assert verify_chain(events) == 4


def test_deleted_event_is_named_by_the_missing_seq() -> None:
    events = make_events()
    del events[5]
    assert verify_chain(events) == 5
    assert verify_chain(make_events()[:-1]) is None  # truncating the tail alone is a prefix


def test_reordered_events_are_named() -> None:
    events = make_events()
    events[6], events[7] = events[7], events[6]
    assert verify_chain(events) == 6


def test_missing_or_bad_hash_field() -> None:
    events = make_events()
    broken = copy.deepcopy(events)
    del broken[2]["hash"]
    assert verify_chain(broken) == 2
    broken = copy.deepcopy(events)
    broken[0]["prev"] = "1" * 64
    assert verify_chain(broken) == 0


def test_chunk_continues_a_verified_prefix() -> None:
    events = make_events(12)
    head = chain_head(events[:5])
    assert verify_chain(events[5:], start_seq=5, prev=head) is None
    assert verify_chain(events[6:], start_seq=5, prev=head) == 5
    assert verify_chain(events[5:], start_seq=5, prev=ZERO_HASH) == 5


def test_chain_refuses_reserved_fields() -> None:
    chain = HashChain()
    try:
        chain.append("request", 1.0, {"seq": 7})
    except ValueError as exc:
        assert "seq" in str(exc)
    else:
        raise AssertionError("a field named seq must be refused")


def test_record_digest_separates_key_and_value() -> None:
    assert record_digest(b"ab", b"c") != record_digest(b"a", b"bc")
    assert record_digest(None, b"x") != record_digest(b"", b"x")
    assert len(record_digest(b"k", None)) == 64


def test_one_pass_serialisation_matches_the_definition_whatever_the_fields_hold() -> None:
    digests = [record_digest(b"k", b"%d" % i) for i in range(40)]
    awkward: list[dict[str, object]] = [
        {"client_id": "\x00", "reason": '"hash":"\\u0000",'},
        {"nested": {"hash": "\x00", "z": 1}},  # the stand-in's text twice: the plain way
        {"digests": digests, "conn": "\x00"},
        {"a": [{"hash": "\x00"}], "digests": digests},
    ]
    chain = HashChain()
    events = []
    for i, fields in enumerate(awkward):
        event = chain.append("request", 1000.0 + i, fields)
        assert event["hash"] == event_hash(event)
        assert chain.last_line == canonical_json(event)
        assert chain.head == link_of(event)
        events.append(event)
    assert verify_chain(events) is None
