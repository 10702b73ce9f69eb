"""Decode and encode Kafka message bodies at a given version, driven by kafka-python's schemas.

kafka-python 3.x turns Apache Kafka's JSON message schemas into field trees (`StructField`,
`ArrayField`, `SimpleField`) and data classes; we walk those same trees and build those same
data classes, but with the guarantees a proxy needs and kafka-python's own codec does not give:

* bounded: every count and length is checked against the bytes that remain before anything is
  allocated, so a huge array count in a small frame is an error, not a memory spike;
* exact: the whole body must be consumed; trailing bytes or truncation are errors that name the
  field and whose fault it is (`ClientProtocolError` for requests, `BrokerProtocolError` for
  responses);
* faithful: unknown tagged fields are kept (as raw bytes) and known tagged fields that were on
  the wire are re-encoded even when they hold their default, so decode + encode of an
  unchanged body gives the same bytes.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from typing import Any

from kafka.protocol.schemas.fields.codecs import (
    UUID,
    BitField,
    Boolean,
    Bytes,
    Float64,
    Int8,
    Int16,
    Int32,
    Int64,
    String,
    UnsignedInt16,
)

from streamctl.kafka.apis import MESSAGE_CLASSES, api_name
from streamctl.kafka.errors import BrokerProtocolError, ClientProtocolError
from streamctl.kafka.wire import Buffer, WireError, read_uvarint, write_uvarint

#: A decoded message or struct: a kafka-python DataContainer (attributes named like the schema).
Message = Any

_FIXED: dict[type, struct.Struct] = {
    Int8: struct.Struct(">b"),
    Int16: struct.Struct(">h"),
    UnsignedInt16: struct.Struct(">H"),
    Int32: struct.Struct(">i"),
    Int64: struct.Struct(">q"),
    Float64: struct.Struct(">d"),
    Boolean: struct.Struct(">?"),
}
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_ZERO_UUID = uuid.UUID(int=0)


# --------------------------------------------------------------------------- decoding


class _Reader:
    """A cursor over one body: every read checks the remaining length first."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: Buffer, pos: int, end: int) -> None:
        self.data = data
        self.pos = pos
        self.end = end

    def need(self, n: int, what: str) -> None:
        if n > self.end - self.pos:
            raise WireError(f"{what} needs {n} bytes but only {self.end - self.pos} remain")

    def fixed(self, codec: struct.Struct) -> Any:
        self.need(codec.size, "value")
        (value,) = codec.unpack_from(self.data, self.pos)
        self.pos += codec.size
        return value

    def uvarint(self) -> int:
        value, self.pos = read_uvarint(self.data, self.pos, self.end)
        return value

    def length(self, compact: bool, wide: bool) -> int:
        """Read a length/count prefix; -1 means null."""
        if compact:
            return self.uvarint() - 1
        return int(self.fixed(_I32 if wide else _I16))

    def take(self, n: int, what: str) -> bytes:
        self.need(n, what)
        raw = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return raw


def _decode_simple(field: Any, reader: _Reader, compact: bool) -> Any:
    codec = field._type
    fixed = _FIXED.get(codec)
    if fixed is not None:
        return reader.fixed(fixed)
    if isinstance(codec, String):
        n = reader.length(compact, wide=False)
        if n < 0:
            return None
        raw = reader.take(n, "string")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise WireError("string is not valid UTF-8") from None
    if codec is Bytes:
        n = reader.length(compact, wide=True)
        if n < 0:
            return None
        return reader.take(n, "bytes")
    if codec is UUID:
        value = uuid.UUID(bytes=reader.take(16, "uuid"))
        return None if value == _ZERO_UUID else value
    if codec is BitField:
        bits = BitField.from_32_bit_field(reader.fixed(_U32))
        return None if bits == {31} else bits
    raise WireError(f"unsupported field type {field.type_str}")


def _decode_array(field: Any, reader: _Reader, version: int, flexible: bool) -> list[Any] | None:
    count = reader.length(flexible, wide=True)
    if count < 0:
        return None
    remaining = reader.end - reader.pos
    if count > remaining:
        raise WireError(f"array claims {count} entries but only {remaining} bytes remain")
    element = field.array_of
    if field.is_struct_array():
        return [_decode_struct(element, reader, version, flexible) for _ in range(count)]
    return [_decode_simple(element, reader, flexible) for _ in range(count)]


def _decode_field(field: Any, reader: _Reader, version: int, flexible: bool) -> Any:
    if field.is_array():
        return _decode_array(field, reader, version, flexible)
    if field.is_struct():
        if field.nullable_for_version_q(version):
            marker = reader.fixed(_FIXED[Int8])
            if marker < 0:
                return None
        return _decode_struct(field, reader, version, flexible)
    return _decode_simple(field, reader, flexible)


def _decode_struct(
    struct_field: Any, reader: _Reader, version: int, flexible: bool, data_class: Any = None
) -> Message:
    cls = data_class if data_class is not None else struct_field.data_class
    obj = object.__new__(cls)
    obj._version = version
    obj.tags = None
    obj.unknown_tags = None
    for field in struct_field.untagged_fields(version):
        try:
            value = _decode_field(field, reader, version, flexible)
        except WireError as exc:
            raise WireError(f"{field.name}: {exc}") from None
        setattr(obj, field.name, value)
    if flexible:
        _decode_tagged(struct_field, obj, reader, version)
    return obj


def _decode_tagged(struct_field: Any, obj: Message, reader: _Reader, version: int) -> None:
    count = reader.uvarint()
    if count > reader.end - reader.pos:
        raise WireError(f"{count} tagged fields announced but few bytes remain")
    known = struct_field.tagged_fields(version)._tags
    for _ in range(count):
        tag = reader.uvarint()
        size = reader.uvarint()
        reader.need(size, f"tagged field {tag}")
        field = known.get(tag)
        if field is None:
            if obj.unknown_tags is None:
                obj.unknown_tags = {}
            obj.unknown_tags[f"_{tag}"] = reader.take(size, f"tagged field {tag}")
            continue
        sub = _Reader(reader.data, reader.pos, reader.pos + size)
        try:
            value = _decode_field(field, sub, version, True)
        except WireError as exc:
            raise WireError(f"{field.name} (tag {tag}): {exc}") from None
        if sub.pos != sub.end:
            raise WireError(f"{field.name} (tag {tag}) holds {sub.end - sub.pos} stray bytes")
        reader.pos = sub.end
        if obj.tags is None:
            obj.tags = set()
        obj.tags.add(field.name)
        setattr(obj, field.name, value)


# --------------------------------------------------------------------------- encoding


def _encode_simple(field: Any, value: Any, out: bytearray, compact: bool) -> None:
    codec = field._type
    fixed = _FIXED.get(codec)
    if fixed is not None:
        out += fixed.pack(value)
    elif isinstance(codec, String):
        if value is None:
            out += b"\x00" if compact else _I16.pack(-1)
        else:
            raw = str(value).encode("utf-8")
            out += write_uvarint(len(raw) + 1) if compact else _I16.pack(len(raw))
            out += raw
    elif codec is Bytes:
        if value is None:
            out += b"\x00" if compact else _I32.pack(-1)
        else:
            raw = bytes(value)
            out += write_uvarint(len(raw) + 1) if compact else _I32.pack(len(raw))
            out += raw
    elif codec is UUID:
        out += (_ZERO_UUID if value is None else value).bytes
    elif codec is BitField:
        out += _U32.pack(BitField.to_32_bit_field({31} if value is None else value))
    else:
        raise TypeError(f"unsupported field type {field.type_str}")


def _encode_field(field: Any, value: Any, out: bytearray, version: int, flexible: bool) -> None:
    if field.is_array():
        if value is None:
            out += b"\x00" if flexible else _I32.pack(-1)
            return
        out += write_uvarint(len(value) + 1) if flexible else _I32.pack(len(value))
        element = field.array_of
        if field.is_struct_array():
            for item in value:
                _encode_struct(element, item, out, version, flexible)
        else:
            for item in value:
                _encode_simple(element, item, out, flexible)
    elif field.is_struct():
        if field.nullable_for_version_q(version):
            if value is None:
                out += b"\xff"
                return
            out += b"\x01"
        _encode_struct(field, value, out, version, flexible)
    else:
        _encode_simple(field, value, out, flexible)


def _encode_struct(
    struct_field: Any, obj: Message, out: bytearray, version: int, flexible: bool
) -> None:
    for field in struct_field.untagged_fields(version):
        _encode_field(field, getattr(obj, field.name), out, version, flexible)
    if flexible:
        _encode_tagged(struct_field, obj, out, version)


def _encode_tagged(struct_field: Any, obj: Message, out: bytearray, version: int) -> None:
    present: list[tuple[int, bytes]] = []
    was_on_wire = getattr(obj, "tags", None) or ()
    for field in struct_field.tagged_fields(version)._fields:
        value = getattr(obj, field.name)
        if field.name in was_on_wire or value != field.default:
            body = bytearray()
            _encode_field(field, value, body, version, True)
            present.append((field.tag, bytes(body)))
    unknown: dict[str, bytes] = getattr(obj, "unknown_tags", None) or {}
    for name, raw in unknown.items():
        present.append((int(name[1:]), bytes(raw)))
    present.sort(key=lambda item: item[0])
    out += write_uvarint(len(present))
    for tag, raw_value in present:
        out += write_uvarint(tag)
        out += write_uvarint(len(raw_value))
        out += raw_value


# --------------------------------------------------------------------------- public API


def _message_class(api_key: int, request: bool) -> Any:
    classes = MESSAGE_CLASSES.get(api_key)
    if classes is None:
        raise KeyError(api_key)
    return classes[0] if request else classes[1]


def _check_version(cls: Any, api_key: int, version: int, make: Callable[[str], Exception]) -> None:
    if not 0 <= version <= int(cls.max_version):
        raise make(
            f"{api_name(api_key)} v{version} is beyond what streamctl can parse "
            f"(up to v{cls.max_version})"
        )


def decode_body_prefix(
    message_cls: Any, version: int, data: Buffer, pos: int = 0
) -> tuple[Message, int]:
    """Decode one message body starting at pos; return it and the position just after it."""
    reader = _Reader(data, pos, len(data))
    flexible = bool(message_cls.flexible_version_q(version))
    obj = _decode_struct(message_cls._struct, reader, version, flexible, message_cls[None])
    return obj, reader.pos


def decode_body(
    message_cls: Any, version: int, data: Buffer, pos: int = 0, exact: bool = True
) -> Message:
    """Decode a message body at a version; with exact, bytes left after it are a WireError.

    Kafka itself ignores bytes after a body (and librdkafka sends a few after some Metadata
    requests), so the request/response helpers below are lenient by default: the broker and
    the tunnel then act on the very same decoded prefix.
    """
    obj, end = decode_body_prefix(message_cls, version, data, pos)
    if exact and end != len(data):
        raise WireError(f"{len(data) - end} unexpected bytes after the body")
    return obj


def encode_body(message_cls: Any, version: int, obj: Message) -> bytes:
    """Encode a message body at a version, keeping tagged fields that were decoded."""
    out = bytearray()
    flexible = bool(message_cls.flexible_version_q(version))
    _encode_struct(message_cls._struct, obj, out, version, flexible)
    return bytes(out)


def decode_request(
    api_key: int, api_version: int, body: Buffer, pos: int = 0, exact: bool = False
) -> Message:
    """Decode a request body (after the header); ClientProtocolError if it is not valid."""
    try:
        cls = _message_class(api_key, request=True)
    except KeyError:
        raise ClientProtocolError(
            f"client sent {api_name(api_key)}, which streamctl does not understand"
        ) from None
    _check_version(cls, api_key, api_version, ClientProtocolError)
    try:
        return decode_body(cls, api_version, body, pos, exact)
    except WireError as exc:
        raise ClientProtocolError(
            f"client sent a malformed {api_name(api_key)} v{api_version} request: {exc}"
        ) from None


def decode_response(
    api_key: int, api_version: int, body: Buffer, pos: int = 0, exact: bool = False
) -> Message:
    """Decode a response body (after the header); BrokerProtocolError if it is not valid."""
    try:
        cls = _message_class(api_key, request=False)
    except KeyError:
        raise BrokerProtocolError(
            f"broker answered {api_name(api_key)}, which streamctl does not understand"
        ) from None
    _check_version(cls, api_key, api_version, BrokerProtocolError)
    try:
        return decode_body(cls, api_version, body, pos, exact)
    except WireError as exc:
        raise BrokerProtocolError(
            f"broker sent a malformed {api_name(api_key)} v{api_version} response: {exc}"
        ) from None


def encode_request(api_key: int, api_version: int, message: Message) -> bytes:
    """Encode a request body (no header) at a version."""
    return encode_body(_message_class(api_key, request=True), api_version, message)


def encode_response(api_key: int, api_version: int, message: Message) -> bytes:
    """Encode a response body (no header) at a version."""
    return encode_body(_message_class(api_key, request=False), api_version, message)
