"""Request headers (v0-v2) and response headers (v0-v1), flexible-version aware.

The header version follows from the API key and version: flexible request bodies come with
request header v2 (tagged fields after the client id), flexible response bodies with
response header v1 (tagged fields after the correlation id). ApiVersions is the exception:
its response header is always v0 so that a client can read it before knowing anything.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from streamctl.kafka.apis import ApiKey, api_name, request_is_flexible, response_is_flexible
from streamctl.kafka.errors import BrokerProtocolError, ClientProtocolError
from streamctl.kafka.wire import WireError, read_tagged_fields

_FIXED = struct.Struct(">hhi")
_CORRELATION = struct.Struct(">i")
_STRING_LEN = struct.Struct(">h")
#: Kafka's API keys are below 100 and versions below 30 today; far beyond means "not Kafka".
_SANE_API_KEY = 999
_SANE_API_VERSION = 999


@dataclass(frozen=True, slots=True)
class RequestHeader:
    """What the first bytes of every request say: which API, which version, which request."""

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    #: Length in bytes of the header inside the frame; the body starts at frame[size:].
    size: int

    @property
    def header_version(self) -> int:
        """Request header version used on the wire (1 or 2; 0 is only for controlled shutdown)."""
        return request_header_version(self.api_key, self.api_version)


def request_header_version(api_key: int, api_version: int) -> int:
    """Request header version for an API version: 2 when the body is flexible, else 1."""
    return 2 if request_is_flexible(api_key, api_version) else 1


def response_header_version(api_key: int, api_version: int) -> int:
    """Response header version for an API version; ApiVersions always answers with v0."""
    if api_key == ApiKey.API_VERSIONS:
        return 0
    return 1 if response_is_flexible(api_key, api_version) else 0


def parse_request_header(frame: bytes | bytearray) -> RequestHeader:
    """Read a request header from a frame payload; raise ClientProtocolError if it is invalid."""
    if len(frame) < _FIXED.size + 2:
        raise ClientProtocolError(
            f"client sent a {len(frame)}-byte frame, too short for a Kafka request header"
        )
    api_key, api_version, correlation_id = _FIXED.unpack_from(frame, 0)
    if api_key < 0 or api_version < 0:
        raise ClientProtocolError(
            f"client sent a request with api key {api_key} version {api_version}: "
            "negative values mean the stream is not Kafka (or is misaligned)"
        )
    if api_key > _SANE_API_KEY or api_version > _SANE_API_VERSION:
        raise ClientProtocolError(
            f"client sent a request with api key {api_key} version {api_version}, far outside "
            "anything Kafka defines: the stream is probably not Kafka (or is misaligned)"
        )
    pos = _FIXED.size
    (length,) = _STRING_LEN.unpack_from(frame, pos)
    pos += 2
    client_id: str | None = None
    if length >= 0:
        if pos + length > len(frame):
            raise ClientProtocolError(
                f"client sent a {api_name(api_key)} request whose client id claims {length} "
                f"bytes but only {len(frame) - pos} remain"
            )
        try:
            client_id = frame[pos : pos + length].decode("utf-8")
        except UnicodeDecodeError:
            raise ClientProtocolError(
                f"client sent a {api_name(api_key)} request whose client id is not UTF-8"
            ) from None
        pos += length
    elif length != -1:
        raise ClientProtocolError(
            f"client sent a {api_name(api_key)} request with client id length {length}"
        )
    if request_is_flexible(api_key, api_version):
        try:
            pos = read_tagged_fields(frame, pos)
        except WireError as exc:
            raise ClientProtocolError(
                f"client sent a {api_name(api_key)} v{api_version} request with a broken "
                f"header: {exc}"
            ) from None
    return RequestHeader(api_key, api_version, correlation_id, client_id, pos)


def encode_request_header(
    api_key: int, api_version: int, correlation_id: int, client_id: str | None
) -> bytes:
    """Encode a request header (v1 or v2 as the API version requires); used for own requests."""
    out = bytearray(_FIXED.pack(api_key, api_version, correlation_id))
    if client_id is None:
        out += _STRING_LEN.pack(-1)
    else:
        raw = client_id.encode("utf-8")
        out += _STRING_LEN.pack(len(raw)) + raw
    if request_header_version(api_key, api_version) >= 2:
        out += b"\x00"
    return bytes(out)


def encode_response_header(correlation_id: int, header_version: int) -> bytes:
    """Encode a response header: the correlation id, plus empty tagged fields in v1."""
    raw = _CORRELATION.pack(correlation_id)
    return raw + b"\x00" if header_version >= 1 else raw


def correlation_id_of_response(frame: bytes) -> int:
    """Read the correlation id a response frame answers; the tunnel matches it to its request."""
    if len(frame) < 4:
        raise BrokerProtocolError(
            f"broker sent a {len(frame)}-byte frame, too short for a response header"
        )
    return int(_CORRELATION.unpack_from(frame, 0)[0])


def response_body_offset(frame: bytes, header_version: int) -> int:
    """Where the body of a response starts, after its v0 or v1 header."""
    if header_version == 0:
        if len(frame) < 4:
            raise BrokerProtocolError("broker sent a response shorter than its header")
        return 4
    try:
        return read_tagged_fields(frame, 4)
    except WireError as exc:
        raise BrokerProtocolError(f"broker sent a response with a broken header: {exc}") from None
