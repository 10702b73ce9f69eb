"""The hash chain over a session's events, and its verification.

Each event carries `hash` (sha256 of its canonical JSON without `hash`) and `prev`
(sha256 of the previous event's canonical JSON including its `hash`; 64 zeros for
seq 0). Editing, deleting or reordering any event breaks the chain at the first
event touched, and `verify_chain` names that sequence number.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from streamctl.transcript.events import ZERO_HASH, Event, canonical_json


def event_hash(event: Mapping[str, Any]) -> str:
    """The `hash` field an event must carry: sha256 over everything else in it."""
    body = {k: v for k, v in event.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def link_of(event: Mapping[str, Any]) -> str:
    """The `prev` value the next event must carry: sha256 of this whole event."""
    return hashlib.sha256(canonical_json(event)).hexdigest()


#: Stands in for `hash` while an event is serialised (its JSON text is "\\u0000"). The chain
#: always adds "prev", "seq", "ts" and "type", which sort after "hash", so the hash item is
#: always followed by a comma.
_MARK = "\x00"
_MARK_ITEM = b'"hash":"\\u0000",'


class HashChain:
    """Builds chained events one by one; the tunnel's recorder owns one per session."""

    def __init__(self, *, next_seq: int = 0, prev: str = ZERO_HASH) -> None:
        self.next_seq = next_seq
        self.head = prev
        #: The canonical bytes of the last appended event: hashed for the link, and reused by
        #: the spool so an event is serialised for the chain and the disk only once.
        self.last_line = b""

    def append(self, event_type: str, ts: float, fields: Mapping[str, Any]) -> Event:
        """Seal `fields` into the next event of the chain and advance the head."""
        reserved = {"seq", "ts", "type", "prev", "hash"} & fields.keys()
        if reserved:
            raise ValueError(f"fields {sorted(reserved)} are set by the chain")
        event: Event = dict(fields)
        event.update(seq=self.next_seq, ts=round(ts, 6), type=event_type, prev=self.head)
        # Serialise once, with a stand-in where the hash goes: the text without the stand-in
        # is what the hash covers, and with the hash in its place it is the line. When the
        # stand-in's text is not found exactly once, serialise twice the plain way.
        event["hash"] = _MARK
        text = canonical_json(event)
        at = text.find(_MARK_ITEM)
        after = at + len(_MARK_ITEM)
        if at >= 0 and text.find(_MARK_ITEM, after) < 0:
            view = memoryview(text)
            covered = hashlib.sha256(view[:at])
            covered.update(view[after:])
            digest = covered.hexdigest()
            event["hash"] = digest
            self.last_line = b'%s"hash":"%s",%s' % (text[:at], digest.encode("ascii"),
                                                     text[after:])
        else:
            del event["hash"]
            event["hash"] = event_hash(event)
            self.last_line = canonical_json(event)
        self.head = hashlib.sha256(self.last_line).hexdigest()
        self.next_seq += 1
        return event


def verify_chain(
    events: Iterable[Mapping[str, Any]], *, start_seq: int = 0, prev: str = ZERO_HASH
) -> int | None:
    """The first sequence number where the chain is broken, or None when it holds.

    `start_seq`/`prev` let a server check a chunk that continues an already verified
    prefix. The number returned is the position the bad event occupies in the chain,
    so a deleted event is named by the sequence number that went missing.
    """
    expected_seq = start_seq
    expected_prev = prev
    for event in events:
        if (
            event.get("seq") != expected_seq
            or event.get("prev") != expected_prev
            or not isinstance(event.get("hash"), str)
            or event_hash(event) != event["hash"]
        ):
            return expected_seq
        expected_prev = link_of(event)
        expected_seq += 1
    return None


def chain_head(events: Iterable[Mapping[str, Any]], *, prev: str = ZERO_HASH) -> str:
    """The link of the last event (what the next `prev` would be)."""
    head = prev
    for event in events:
        head = link_of(event)
    return head
