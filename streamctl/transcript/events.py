"""The transcript event vocabulary and its canonical JSON form.

Every event is a flat JSON object; the canonical bytes (sorted keys, no spaces, ASCII
only) are what the hash chain covers, so the tunnel and the server hash identical bytes.
Events never carry payloads: produced records are represented by a digest each.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

#: `prev` of the first event of a session.
ZERO_HASH = "0" * 64

#: The fields every event has, whatever its type.
BASE_FIELDS = ("seq", "ts", "type", "prev", "hash")


class EventType(StrEnum):
    """What happened; one value per line kind in a transcript."""

    SESSION_START = "session_start"
    REQUEST = "request"
    PRODUCED = "produced"
    FETCHED = "fetched"
    CLOSE = "close"
    SESSION_END = "session_end"


Event = dict[str, Any]


_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
)
#: The characters `json.dumps` writes as they are (printable ASCII but quote and backslash).
_PLAIN = bytes(c for c in range(0x20, 0x7F) if c not in b'"\\')
#: Below this many digests an event is serialised the plain way (the splice costs more).
_FAST_DIGESTS = 16
#: Stands in for the digest list while the rest of the event is encoded (written \u0000).
_MARK = "\x00"


def canonical_json(event: Mapping[str, Any]) -> bytes:
    """The one byte form of an event that is hashed, spooled and uploaded.

    A produced event holds up to hundreds of hex digests, and `json` encodes each string
    on its own (checking every character for escapes). Such a list of plain strings is
    written with one join instead; the bytes are the same as `json.dumps` gives.
    """
    digests = event.get("digests")
    if type(digests) is list and len(digests) >= _FAST_DIGESTS:
        spliced = _with_plain_strings(event, "digests", digests)
        if spliced is not None:
            return spliced
    return _ENCODER.encode(event).encode("ascii")


def _with_plain_strings(event: Mapping[str, Any], key: str, strings: list[Any]) -> bytes | None:
    """`canonical_json(event)` with event[key] written by a join; None when it may not be.

    A join writes what `json.dumps` would only for strings that need no escape: printable
    ASCII without quote or backslash. The rest of the event is encoded with a one-string
    stand-in list at `key`, which is then replaced; if the stand-in's text is not found
    exactly once (another field could hold the same), or anything else is unusual, the
    caller encodes the plain way.
    """
    try:
        joined = "".join(strings)
    except TypeError:
        return None
    if not joined.isascii() or joined.encode("ascii").translate(None, _PLAIN):
        return None
    rest = dict(event)
    rest[key] = [_MARK]
    text = _ENCODER.encode(rest)
    stand_in = _ENCODER.encode({key: [_MARK]})[1:-1]
    if text.count(stand_in) != 1:
        return None
    return text.replace(stand_in, f'"{key}":["' + '","'.join(strings) + '"]').encode("ascii")


def parse_event_line(line: bytes | str) -> Event:
    """Parse one JSON line into an event; ValueError when it is not a JSON object."""
    value = json.loads(line)
    if not isinstance(value, dict):
        raise ValueError("a transcript line must be a JSON object")
    return value


_NULL_LENGTH = b"\xff\xff\xff\xff"


def record_digest(key: bytes | None, value: bytes | None) -> str:
    """A digest of one record's key and value, so a record can be recognised without storing it.

    Lengths are hashed too (-1 for null) so that key/value boundaries cannot be shifted.
    One hash call per record: this runs for every produced record on the tunnel's path.
    """
    return hashlib.sha256(
        (_NULL_LENGTH if key is None else len(key).to_bytes(4, "big") + key)
        + (_NULL_LENGTH if value is None else len(value).to_bytes(4, "big") + value)
    ).hexdigest()
