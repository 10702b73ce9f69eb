"""The supported-versions table, the ApiVersions clamp and the KIP-511 answer."""

from __future__ import annotations

from typing import Any

from streamctl.kafka import error_codes
from streamctl.kafka.apis import MESSAGE_CLASSES, ApiKey
from streamctl.kafka.headers import (
    encode_request_header,
    encode_response_header,
    parse_request_header,
)
from streamctl.kafka.messages import decode_response, encode_response
from streamctl.kafka.versions import (
    SUPPORTED_VERSIONS,
    answer_too_new_api_versions,
    api_versions_unsupported,
    clamp_api_versions,
    is_supported,
)
from tests.kafka.builders import message

K = ApiKey


def _broker_answer(version: int, keys: list[tuple[int, int, int]], **extra: Any) -> bytes:
    body = message(K.API_VERSIONS, version, request=False, error_code=0,
                   api_keys=[{"api_key": k, "min_version": lo, "max_version": hi} for k, lo, hi in keys],
                   throttle_time_ms=0, **extra)
    return encode_response_header(77, 0) + encode_response(K.API_VERSIONS, version, body)


def test_table_covers_every_issue_api_within_the_schemas() -> None:
    assert set(SUPPORTED_VERSIONS) == {int(k) for k in ApiKey}
    for key, (low, high) in SUPPORTED_VERSIONS.items():
        req, resp = MESSAGE_CLASSES[key]
        assert low <= high <= min(req.max_version, resp.max_version)
    assert SUPPORTED_VERSIONS[K.SASL_HANDSHAKE] == (1, 1)  # v0 sends unframed SASL tokens
    assert is_supported(K.FETCH, 13)
    assert not is_supported(K.PRODUCE, 2)
    assert not is_supported(71, 0)  # KIP-714 telemetry is never offered


def test_clamp_narrows_ranges_and_drops_unknown_keys() -> None:
    features = [{"name": "metadata.version", "min_version": 1, "max_version": 27}]
    frame = _broker_answer(3, [(0, 3, 40), (1, 4, 17), (18, 0, 9), (68, 0, 1), (71, 0, 0),
                               (72, 0, 0), (17, 0, 1), (4, 0, 7)],
                           supported_features=features, finalized_features_epoch=5)
    out = clamp_api_versions(frame, 3)
    assert out[:4] == frame[:4]
    resp = decode_response(K.API_VERSIONS, 3, out, 4)
    got = {k.api_key: (k.min_version, k.max_version) for k in resp.api_keys}
    assert got == {0: (3, SUPPORTED_VERSIONS[0][1]), 1: (4, 17), 18: (0, 4), 17: (1, 1)}
    assert [f.name for f in resp.supported_features] == ["metadata.version"]
    assert resp.finalized_features_epoch == 5


def test_clamp_keeps_unknown_tagged_fields_of_the_broker() -> None:
    frame = _broker_answer(3, [(3, 0, 13)])
    tagged = frame[:-1] + b"\x01\x1f\x02ok"  # an unknown tag 31 at the end of the body
    out = clamp_api_versions(tagged, 3)
    assert out.endswith(b"\x01\x1f\x02ok")


def test_clamp_reads_the_brokers_kip511_answer_as_v0() -> None:
    frame = api_versions_unsupported(5)
    assert clamp_api_versions(frame, 4) == frame  # key 18 alone is within our table
    wider = encode_response_header(6, 0) + encode_response(K.API_VERSIONS, 0, message(
        K.API_VERSIONS, 0, request=False, error_code=error_codes.UNSUPPORTED_VERSION,
        api_keys=[{"api_key": 18, "min_version": 0, "max_version": 9}]))
    resp = decode_response(K.API_VERSIONS, 0, clamp_api_versions(wider, 7), 4)
    assert resp.error_code == error_codes.UNSUPPORTED_VERSION
    assert [(k.api_key, k.max_version) for k in resp.api_keys] == [(18, SUPPORTED_VERSIONS[18][1])]


def test_kip511_answer_for_a_too_new_request() -> None:
    frame = encode_request_header(K.API_VERSIONS, 9, 31, "new-client") + b"\x00\x00\x00"
    header = parse_request_header(frame)
    payload = answer_too_new_api_versions(header)
    assert payload is not None
    response_cls = MESSAGE_CLASSES[K.API_VERSIONS][1]
    resp = response_cls.decode(payload, version=0, header=True)
    assert resp.header.correlation_id == 31
    assert resp.error_code == error_codes.UNSUPPORTED_VERSION
    assert [(k.api_key, k.min_version, k.max_version) for k in resp.api_keys] == [
        (18, *SUPPORTED_VERSIONS[18])]


def test_no_kip511_answer_for_supported_or_other_requests() -> None:
    frame = encode_request_header(K.API_VERSIONS, 3, 1, "c")
    assert answer_too_new_api_versions(parse_request_header(frame)) is None
    frame = encode_request_header(K.METADATA, 12, 1, "c")
    assert answer_too_new_api_versions(parse_request_header(frame)) is None
