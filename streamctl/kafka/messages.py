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
            pos = self.pos
            if pos < self.end and self.data[pos] < 0x80:  # one-byte varint: the common case
                self.pos = pos + 1
                return int(self.data[pos]) - 1
            return self.uvarint() - 1
        return int(self.fixed(_I32 if wide else _I16))

    def take(self, n: int, what: str) -> bytes:
        self.need(n, what)
        raw = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return raw

    def take_view(self, n: int, what: str) -> bytes | memoryview:
        """Like `take`, but a large field of a memoryview body stays a view of it.

        A Produce request's records are most of its megabyte and the tunnel only forwards
        them: decoding its frame through a memoryview spares that copy.
        """
        self.need(n, what)
        pos = self.pos
        self.pos = pos + n
        data = self.data
        if n >= _VIEW_AT_LEAST and isinstance(data, memoryview):
            return data[pos : pos + n]
        return bytes(data[pos : pos + n])


#: Byte fields at least this large are left as views when the body is a memoryview.
_VIEW_AT_LEAST = 4096


_Decoder = Callable[[_Reader], Any]
#: Compiled decoders per (field, version, flexible, data class): built once, reused for every frame.
_DECODERS: dict[tuple[int, int, bool, int], _Decoder] = {}


def _fixed_decoder(codec: struct.Struct) -> _Decoder:
    size = codec.size
    unpack = codec.unpack_from

    def decode(r: _Reader) -> Any:
        pos = r.pos
        if pos + size > r.end:
            raise WireError(f"value needs {size} bytes but only {r.end - pos} remain")
        r.pos = pos + size
        return unpack(r.data, pos)[0]

    return decode


def _simple_decoder(field: Any, compact: bool) -> _Decoder:
    codec = field._type
    fixed = _FIXED.get(codec)
    if fixed is not None:
        return _fixed_decoder(fixed)
    if isinstance(codec, String):

        def decode_string(r: _Reader) -> str | None:
            n = r.length(compact, wide=False)
            if n < 0:
                return None
            try:
                return r.take(n, "string").decode("utf-8")
            except UnicodeDecodeError:
                raise WireError("string is not valid UTF-8") from None

        return decode_string
    if codec is Bytes:

        def decode_bytes(r: _Reader) -> bytes | memoryview | None:
            n = r.length(compact, wide=True)
            return None if n < 0 else r.take_view(n, "bytes")

        return decode_bytes
    if codec is UUID:

        def decode_uuid(r: _Reader) -> uuid.UUID | None:
            value = uuid.UUID(bytes=r.take(16, "uuid"))
            return None if value == _ZERO_UUID else value

        return decode_uuid
    if codec is BitField:

        def decode_bits(r: _Reader) -> set[int] | None:
            bits: set[int] = BitField.from_32_bit_field(r.fixed(_U32))
            return None if bits == {31} else bits

        return decode_bits
    raise TypeError(f"unsupported field type {field.type_str}")


def _field_decoder(field: Any, version: int, flexible: bool) -> _Decoder:
    if field.is_array():
        element = (
            _struct_decoder(field.array_of, version, flexible)
            if field.is_struct_array()
            else _simple_decoder(field.array_of, flexible)
        )

        def decode_array(r: _Reader) -> list[Any] | None:
            count = r.length(flexible, wide=True)
            if count < 0:
                return None
            remaining = r.end - r.pos
            if count > remaining:  # every entry takes at least one byte
                raise WireError(f"array claims {count} entries but only {remaining} bytes remain")
            return [element(r) for _ in range(count)]

        return decode_array
    if field.is_struct():
        inner = _struct_decoder(field, version, flexible)
        if not field.nullable_for_version_q(version):
            return inner
        marker = _fixed_decoder(_FIXED[Int8])

        def decode_nullable(r: _Reader) -> Any:
            return None if marker(r) < 0 else inner(r)

        return decode_nullable
    return _simple_decoder(field, flexible)


def _struct_decoder(
    struct_field: Any, version: int, flexible: bool, data_class: Any = None
) -> _Decoder:
    """Compile a decoder for one struct at one version; runs of fixed fields unpack at once."""
    cls = data_class if data_class is not None else struct_field.data_class
    key = (id(struct_field), version, flexible, id(cls))
    cached = _DECODERS.get(key)
    if cached is not None:
        return cached
    steps: list[tuple[bool, tuple[str, ...], Any]] = []
    run: list[Any] = []

    def flush() -> None:
        if len(run) == 1:
            steps.append((True, (run[0].name,), _fixed_decoder(_FIXED[run[0]._type])))
        elif run:
            fmt = ">" + "".join(_FIXED[f._type].format[1:] for f in run)
            steps.append((False, tuple(f.name for f in run), struct.Struct(fmt)))
        run.clear()

    for field in struct_field.untagged_fields(version):
        if not field.is_array() and not field.is_struct() and field._type in _FIXED:
            run.append(field)
            continue
        flush()
        steps.append((True, (field.name,), _field_decoder(field, version, flexible)))
    flush()

    def decode(r: _Reader) -> Message:
        obj = object.__new__(cls)
        obj._version = version
        obj.tags = None
        obj.unknown_tags = None
        for single, names, how in steps:
            if single:
                try:
                    setattr(obj, names[0], how(r))
                except WireError as exc:
                    raise WireError(f"{names[0]}: {exc}") from None
                continue
            pos = r.pos
            if pos + how.size > r.end:
                raise WireError(
                    f"{names[0]}: {len(names)} fixed fields need {how.size} bytes but only "
                    f"{r.end - pos} remain"
                )
            r.pos = pos + how.size
            for name, value in zip(names, how.unpack_from(r.data, pos), strict=True):
                setattr(obj, name, value)
        if flexible:
            pos = r.pos
            if pos < r.end and r.data[pos] == 0:  # no tagged fields: the common case
                r.pos = pos + 1
            else:
                _decode_tagged(struct_field, obj, r, version)
        return obj

    _DECODERS[key] = decode
    return decode


def _decode_tagged(struct_field: Any, obj: Message, reader: _Reader, version: int) -> None:
    count = reader.uvarint()
    if count == 0:
        return
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
            value = _field_decoder(field, version, True)(sub)
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
            data = value if isinstance(value, bytes | bytearray | memoryview) else bytes(value)
            size = data.nbytes if isinstance(data, memoryview) else len(data)
            out += write_uvarint(size + 1) if compact else _I32.pack(size)
            out += data
    elif codec is UUID:
        out += (_ZERO_UUID if value is None else value).bytes
    elif codec is BitField:
        out += _U32.pack(BitField.to_32_bit_field({31} if value is None else value))
    else:
        raise TypeError(f"unsupported field type {field.type_str}")


_Encoder = Callable[[Any, bytearray], None]
#: Compiled encoders per (field, version, flexible), like the decoders.
_ENCODERS: dict[tuple[int, int, bool], _Encoder] = {}


def _field_encoder(field: Any, version: int, flexible: bool) -> _Encoder:
    if field.is_array():
        if field.is_struct_array():
            element = _struct_encoder(field.array_of, version, flexible)
        else:
            inner_field = field.array_of

            def element(item: Any, out: bytearray) -> None:
                _encode_simple(inner_field, item, out, flexible)

        def encode_array(value: Any, out: bytearray) -> None:
            if value is None:
                out += b"\x00" if flexible else _I32.pack(-1)
                return
            out += write_uvarint(len(value) + 1) if flexible else _I32.pack(len(value))
            for item in value:
                element(item, out)

        return encode_array
    if field.is_struct():
        inner = _struct_encoder(field, version, flexible)
        if not field.nullable_for_version_q(version):
            return inner

        def encode_nullable(value: Any, out: bytearray) -> None:
            if value is None:
                out += b"\xff"
                return
            out += b"\x01"
            inner(value, out)

        return encode_nullable

    def encode_simple(value: Any, out: bytearray) -> None:
        _encode_simple(field, value, out, flexible)

    return encode_simple


def _struct_encoder(struct_field: Any, version: int, flexible: bool) -> _Encoder:
    """Compile an encoder for one struct at one version; runs of fixed fields pack at once."""
    key = (id(struct_field), version, flexible)
    cached = _ENCODERS.get(key)
    if cached is not None:
        return cached
    steps: list[tuple[tuple[str, ...], Any, bool]] = []  # (names, how, is a packed run)
    run: list[Any] = []

    def flush() -> None:
        if run:
            fmt = ">" + "".join(_FIXED[f._type].format[1:] for f in run)
            steps.append((tuple(f.name for f in run), struct.Struct(fmt), True))
        run.clear()

    for field in struct_field.untagged_fields(version):
        if not field.is_array() and not field.is_struct() and field._type in _FIXED:
            run.append(field)
            continue
        flush()
        steps.append(((field.name,), _field_encoder(field, version, flexible), False))
    flush()
    tagged = struct_field.tagged_fields(version)._fields if flexible else ()

    def encode(obj: Any, out: bytearray) -> None:
        for names, how, packed in steps:
            if packed:
                out += how.pack(*[getattr(obj, name) for name in names])
            else:
                how(getattr(obj, names[0]), out)
        if flexible:
            if (not tagged or obj.tags is None) and obj.unknown_tags is None and all(
                getattr(obj, f.name) == f.default for f in tagged
            ):
                out += b"\x00"
            else:
                _encode_tagged(struct_field, obj, out, version)

    _ENCODERS[key] = encode
    return encode


def _encode_tagged(struct_field: Any, obj: Message, out: bytearray, version: int) -> None:
    present: list[tuple[int, bytes]] = []
    was_on_wire = getattr(obj, "tags", None) or ()
    for field in struct_field.tagged_fields(version)._fields:
        value = getattr(obj, field.name)
        if field.name in was_on_wire or value != field.default:
            body = bytearray()
            _field_encoder(field, version, True)(value, body)
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
    decode = _struct_decoder(message_cls._struct, version, flexible, message_cls[None])
    obj = decode(reader)
    # What ApiMessage.__init__ would have set, so kafka-python's own methods work on it too.
    obj._header = None
    obj._min_version = None
    obj._max_version = None
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
    _struct_encoder(message_cls._struct, version, flexible)(obj, out)
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
