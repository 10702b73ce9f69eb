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


def canonical_json(event: Mapping[str, Any]) -> bytes:
    """The one byte form of an event that is hashed, spooled and uploaded."""
    return json.dumps(
        event, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


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
