"""Which API versions the tunnel offers, and the ApiVersions answers that enforce it.

A client only uses versions the broker's ApiVersions response offers, so the tunnel clamps
that response to what it can both parse (kafka-python's bundled schemas) and enforce (the
summary extractor understands it). Keys outside the table, KIP-714 telemetry among them,
disappear from the answer. A client asking with a newer ApiVersions version than ours gets
the KIP-511 answer: UNSUPPORTED_VERSION in a v0 body listing only ApiVersions' own range.
"""

from __future__ import annotations

from collections.abc import Mapping

from streamctl.kafka import error_codes
from streamctl.kafka.apis import MESSAGE_CLASSES, ApiKey
from streamctl.kafka.errors import BrokerProtocolError
from streamctl.kafka.headers import RequestHeader, encode_response_header
from streamctl.kafka.messages import Message, decode_response, encode_response

#: Versions below which the tunnel must not go even if the schema has them.
_NOT_ENFORCEABLE_BELOW: dict[int, int] = {
    # SaslHandshake v0 is followed by raw, unframed SASL tokens the tunnel cannot parse.
    ApiKey.SASL_HANDSHAKE: 1,
}


def _supported() -> dict[int, tuple[int, int]]:
    table: dict[int, tuple[int, int]] = {}
    for key, (request_cls, response_cls) in MESSAGE_CLASSES.items():
        low = max(int(request_cls._valid_versions[0]), int(response_cls._valid_versions[0]),
                  _NOT_ENFORCEABLE_BELOW.get(key, 0))
        high = min(int(request_cls._valid_versions[1]), int(response_cls._valid_versions[1]))
        if low <= high:
            table[int(key)] = (low, high)
    return table


#: api key -> (min, max) version the tunnel can parse and enforce.
SUPPORTED_VERSIONS: dict[int, tuple[int, int]] = _supported()


def is_supported(
    api_key: int, api_version: int, table: Mapping[int, tuple[int, int]] | None = None
) -> bool:
    """Whether a request at this version is one the tunnel may forward."""
    bounds = (SUPPORTED_VERSIONS if table is None else table).get(api_key)
    return bounds is not None and bounds[0] <= api_version <= bounds[1]


def clamp_api_versions_message(
    message: Message, table: Mapping[int, tuple[int, int]] | None = None
) -> Message:
    """Narrow a decoded ApiVersions response in place to the intersection with the table."""
    table = SUPPORTED_VERSIONS if table is None else table
    kept = []
    for entry in message.api_keys or ():
        ours = table.get(entry.api_key)
        if ours is None:
            continue
        low, high = max(entry.min_version, ours[0]), min(entry.max_version, ours[1])
        if low > high:
            continue
        entry.min_version, entry.max_version = low, high
        kept.append(entry)
    message.api_keys = kept
    return message


def _error_code_of(body: bytes, offset: int) -> int:
    if len(body) < offset + 2:
        raise BrokerProtocolError("broker sent an ApiVersions response too short for its error")
    return int.from_bytes(body[offset : offset + 2], "big", signed=True)


def clamp_api_versions(
    frame: bytes, request_version: int, table: Mapping[int, tuple[int, int]] | None = None
) -> bytes:
    """Rewrite a broker's ApiVersions response frame payload (header v0 + body) to our table.

    Every other field, tagged features included, is kept. The broker's own KIP-511 reply
    (UNSUPPORTED_VERSION) is a v0 body whatever the request version, and is clamped as such.
    """
    if len(frame) < 4:
        raise BrokerProtocolError("broker sent an ApiVersions response shorter than its header")
    version = request_version
    if _error_code_of(frame, 4) == error_codes.UNSUPPORTED_VERSION:
        version = 0
    message = decode_response(ApiKey.API_VERSIONS, version, frame, 4)
    clamp_api_versions_message(message, table)
    return frame[:4] + encode_response(ApiKey.API_VERSIONS, version, message)


def api_versions_unsupported(correlation_id: int) -> bytes:
    """KIP-511 answer to a too-new ApiVersions request: v0 body, error 35, only key 18 listed."""
    return api_versions_error(correlation_id, error_codes.UNSUPPORTED_VERSION)


def api_versions_error(correlation_id: int, error_code: int) -> bytes:
    """An ApiVersions error answer the KIP-511 way: header v0, v0 body listing only key 18."""
    low, high = SUPPORTED_VERSIONS[ApiKey.API_VERSIONS]
    response_cls = MESSAGE_CLASSES[ApiKey.API_VERSIONS][1]
    body = response_cls(
        version=0,
        error_code=error_code,
        api_keys=[response_cls.ApiVersion(version=0, api_key=int(ApiKey.API_VERSIONS),
                                          min_version=low, max_version=high)],
    )
    return encode_response_header(correlation_id, 0) + encode_response(
        ApiKey.API_VERSIONS, 0, body
    )


def answer_too_new_api_versions(header: RequestHeader) -> bytes | None:
    """The local KIP-511 reply when a client's ApiVersions request is newer than we parse."""
    if header.api_key != ApiKey.API_VERSIONS:
        return None
    if header.api_version <= SUPPORTED_VERSIONS[ApiKey.API_VERSIONS][1]:
        return None
    return api_versions_unsupported(header.correlation_id)
