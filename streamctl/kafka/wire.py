"""Bounded readers for Kafka's primitive wire types (ints, varints, strings, tagged fields).

Every read checks the bytes that remain before it allocates or slices, so a length or count
read from a hostile frame can never make us allocate more than the frame itself holds.
Errors are `WireError`; callers turn them into client or broker protocol errors.
"""

from __future__ import annotations

#: Anything the readers accept: a frame, a slice of one, or a view into a socket buffer.
Buffer = bytes | bytearray | memoryview


class WireError(ValueError):
    """The bytes do not follow Kafka's primitive encodings (truncated, bad varint...)."""


def read_uvarint(data: Buffer, pos: int, end: int) -> tuple[int, int]:
    """Read an unsigned varint of at most 5 bytes (a Kafka uint32) at pos; return (value, pos)."""
    value = 0
    shift = 0
    for _ in range(5):
        if pos >= end:
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if value > 0xFFFFFFFF:
                raise WireError("varint overflows 32 bits")
            return value, pos
        shift += 7
    raise WireError("varint longer than 5 bytes")


def write_uvarint(value: int) -> bytes:
    """Encode an unsigned 32-bit varint."""
    if value < 0 or value > 0xFFFFFFFF:
        raise ValueError(f"unsigned varint out of range: {value}")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def read_tagged_fields(data: Buffer, pos: int, end: int | None = None) -> int:
    """Skip a tagged-field section (count, then tag/size/bytes each); return the new position."""
    if end is None:
        end = len(data)
    count, pos = read_uvarint(data, pos, end)
    if count > end - pos:
        raise WireError(f"{count} tagged fields announced but only {end - pos} bytes remain")
    for _ in range(count):
        _tag, pos = read_uvarint(data, pos, end)
        size, pos = read_uvarint(data, pos, end)
        if size > end - pos:
            raise WireError(f"tagged field of {size} bytes but only {end - pos} remain")
        pos += size
    return pos
