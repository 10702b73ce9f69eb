"""GrantMasker: strategies, targets, batch fidelity, and failing closed."""

from __future__ import annotations

import json
import struct

import crc32c
import pytest

from streamctl.kafka.compression import Compression
from streamctl.kafka.records import (
    Record,
    RecordBatch,
    decode_batches,
    encode_batch,
)
from streamctl.masking import RECORDS_SEEN, GrantMasker, MaskingError
from streamctl.masking.payload import BINARY_REPLACEMENT
from streamctl.masking.strategies import REDACTED
from tests.masking.grants import SECRET, grant_with, rule

ORDER = {
    "customer": {"email": "jane@example.com", "ssn": "123-45-6789", "name": "Jane"},
    "items": [{"card": "4111111111111111", "sku": "A"}, {"card": "5500005555555559"}],
    "note": "ring +44 20 7946 0958",
}


def _batch(values: list[bytes | None], codec: int = 0, **kwargs: object) -> RecordBatch:
    fields = dict(base_offset=500, partition_leader_epoch=7, attributes=codec,
                  last_offset_delta=len(values) - 1, first_timestamp=1_700_000_000_000,
                  max_timestamp=1_700_000_000_009, producer_id=-1, producer_epoch=-1,
                  base_sequence=-1)
    fields.update(kwargs)
    records = [Record(0, i, i, b"key-%d" % i, v, (("trace", b"t%d" % i),))
               for i, v in enumerate(values)]
    return RecordBatch(records=records, **fields)  # type: ignore[arg-type]


def _mask_values(masker: GrantMasker, values: list[bytes | None], codec: int = 0,
                 topic: str = "orders") -> tuple[list[RecordBatch], dict[str, int]]:
    data = bytes(encode_batch(_batch(values, codec)))
    outcome = masker.mask(topic, 0, data)
    batches, tail = decode_batches(outcome.records)
    assert tail == b""
    return batches, dict(outcome.counts)


def _doc(batch: RecordBatch, i: int = 0) -> object:
    value = batch.records[i].value
    assert value is not None
    return json.loads(value)


def test_field_strategies() -> None:
    masker = GrantMasker(grant_with(
        rule(name="email", fields=("customer.email",), strategy="hash"),
        rule(name="ssn", fields=("customer.ssn",), strategy="redact"),
        rule(name="card", fields=("items[*].card",), strategy="keep_last", keep_last=4),
        rule(name="name", fields=("customer.name",), strategy="null"),
        rule(name="note", fields=("note",), strategy="drop"),
    ), SECRET)
    (batch,), counts = _mask_values(masker, [json.dumps(ORDER).encode()])
    doc = _doc(batch)
    assert isinstance(doc, dict)
    assert doc["customer"]["email"].startswith("hmac:")
    assert doc["customer"]["ssn"] == REDACTED
    assert [i["card"] for i in doc["items"]] == ["************1111", "************5559"]
    assert doc["customer"]["name"] is None
    assert "note" not in doc
    assert counts == {"email": 1, "ssn": 1, "card": 2, "name": 1, "note": 1, RECORDS_SEEN: 1}


def test_hash_is_stable_within_a_grant_and_differs_across_grants() -> None:
    def hashed(grant_id: str, secret: bytes) -> str:
        masker = GrantMasker(grant_with(rule(fields=("customer.email",), strategy="hash"),
                                        grant_id=grant_id), secret)
        (batch,), _ = _mask_values(masker, [json.dumps(ORDER).encode()] * 2)
        first, second = _doc(batch, 0), _doc(batch, 1)
        assert isinstance(first, dict) and isinstance(second, dict)
        assert first["customer"]["email"] == second["customer"]["email"]
        return str(first["customer"]["email"])

    assert hashed("g1", SECRET) == hashed("g1", SECRET)
    assert hashed("g1", SECRET) != hashed("g2", SECRET)
    assert hashed("g1", SECRET) != hashed("g1", b"other-secret")


def test_detectors_on_json_strings_numbers_and_keys() -> None:
    masker = GrantMasker(grant_with(
        rule(name="pii", detectors=("email", "card", "us_ssn", "phone"), strategy="redact")), SECRET)
    value = {"free": "mail jane@example.com or call +44 20 7946 0958",
             "n": 4111111111111111, "jane@example.com": 1, "ok": "nothing here"}
    (batch,), counts = _mask_values(masker, [json.dumps(value).encode()])
    masked = batch.records[0].value or b""
    assert b"jane@example.com" not in masked and b"4111111111111111" not in masked
    assert b"7946" not in masked
    assert _doc(batch) == {"free": f"mail {REDACTED} or call {REDACTED}", "n": REDACTED,
                           REDACTED: 1, "ok": "nothing here"}
    assert counts["pii"] == 4


def test_escaped_json_cannot_hide_a_key_or_a_value() -> None:
    masker = GrantMasker(grant_with(
        rule(name="f", fields=("customer.email",)),
        rule(name="d", detectors=("email",))), SECRET)
    raw = b'{"customer":{"\\u0065mail":"x"},"other":"jane\\u0040example.com"}'
    (batch,), _ = _mask_values(masker, [raw])
    assert _doc(batch) == {"customer": {"email": REDACTED}, "other": REDACTED}


def test_duplicate_keys_do_not_smuggle_an_earlier_value() -> None:
    masker = GrantMasker(grant_with(rule(detectors=("email",))), SECRET)
    raw = b'{"a":"jane@example.com","a":"harmless"}'
    (batch,), _ = _mask_values(masker, [raw])
    assert b"jane@example.com" not in (batch.records[0].value or b"")


def test_text_and_binary_values() -> None:
    masker = GrantMasker(grant_with(
        rule(name="fields", fields=("customer.email",)),
        rule(name="pii", detectors=("email", "card"), strategy="keep_last", keep_last=2)), SECRET)
    text = b"plain text from jane@example.com paying 4111 1111 1111 1111"
    binary = b"\xff\xfe\x00jane@example.com"
    (batch,), counts = _mask_values(masker, [text, binary, None, b""])
    assert batch.records[0].value == (
        b"plain text from " + b"*" * 14 + b"om paying " + b"*" * 17 + b"11")
    assert batch.records[1].value == BINARY_REPLACEMENT
    assert batch.records[2].value is None and batch.records[3].value == b""
    assert counts["binary_replaced"] == 1 and counts["pii"] == 2


def test_keys_and_headers() -> None:
    masker = GrantMasker(grant_with(
        rule(name="k", detectors=("email",), apply_to=("key",)),
        rule(name="auth", fields=("authorization", "x-*"), apply_to=("headers",),
             strategy="drop"),
        rule(name="hdr", detectors=("card",), apply_to=("headers",), strategy="redact"),
    ), SECRET)
    record = Record(0, 0, 0, b"jane@example.com", b"value",
                    (("authorization", b"Bearer abc"), ("x-user", b"u"),
                     ("payment", b"4111111111111111"), ("trace", b"ok"), ("bin", b"\xff")))
    data = bytes(encode_batch(RecordBatch(0, 0, 0, 0, 1, 1, -1, -1, -1, [record])))
    outcome = masker.mask("orders", 3, data)
    (batch,), _ = decode_batches(outcome.records)
    (masked,) = batch.records
    assert masked.key == REDACTED.encode()
    assert masked.value == b"value"
    assert masked.headers == (("payment", REDACTED.encode()), ("trace", b"ok"),
                              ("bin", BINARY_REPLACEMENT))
    assert outcome.counts["auth"] == 2


@pytest.mark.parametrize("codec", list(Compression), ids=[c.name.lower() for c in Compression])
def test_batch_fields_and_boundaries_survive_masking(codec: int) -> None:
    masker = GrantMasker(grant_with(rule(fields=("customer.email",))), SECRET)
    first = _batch([json.dumps(ORDER).encode()] * 3, codec | 0x10, producer_id=77,
                   producer_epoch=2, base_sequence=40)
    second = _batch([b'{"clean": true}'] * 2, codec, base_offset=503)
    control = RecordBatch(505, 7, 0x30, 0, 1_700_000_000_010, 1_700_000_000_010, 77, 2, -1,
                          [Record(0, 0, 0, struct.pack(">hh", 0, 1), struct.pack(">hi", 0, 1))])
    parts = [bytes(encode_batch(b)) for b in (first, second, control)]
    outcome = masker.mask("orders", 0, b"".join(parts))
    out, tail = decode_batches(outcome.records)
    assert tail == b""
    assert len(out) == 3
    for before, after in zip((first, second, control), out, strict=True):
        assert (after.base_offset, after.partition_leader_epoch, after.attributes,
                after.last_offset_delta, after.first_timestamp, after.max_timestamp,
                after.producer_id, after.producer_epoch, after.base_sequence) == (
            before.base_offset, before.partition_leader_epoch, before.attributes,
            before.last_offset_delta, before.first_timestamp, before.max_timestamp,
            before.producer_id, before.producer_epoch, before.base_sequence)
        assert [(r.offset_delta, r.timestamp_delta, r.key, r.headers) for r in after.records] == [
            (r.offset_delta, r.timestamp_delta, r.key, r.headers) for r in before.records]
    assert all(b"jane@example.com" not in (r.value or b"") for r in out[0].records)
    # untouched batches are passed on byte for byte
    assert outcome.records.endswith(parts[1] + parts[2])
    assert outcome.counts[RECORDS_SEEN] == 5


def test_topics_without_rules_and_unmasked_grants() -> None:
    masker = GrantMasker(grant_with(rule(fields=("a",))), SECRET)
    assert masker.needs_masking("orders.eu") and not masker.needs_masking("payments")
    data = bytes(encode_batch(_batch([b'{"a": 1}'])))
    assert masker.mask("payments", 0, data).records == data
    unmasked = GrantMasker(grant_with(rule(fields=("a",)), unmasked=True), SECRET)
    assert not unmasked.needs_masking("orders")


# ---- failing closed ----------------------------------------------------------------------


def _masker() -> GrantMasker:
    return GrantMasker(grant_with(rule(fields=("customer.email",), detectors=("email",))), SECRET)


def test_corrupt_batch_fails_closed() -> None:
    data = bytearray(encode_batch(_batch([json.dumps(ORDER).encode()])))
    data[-5] ^= 0x55
    with pytest.raises(MaskingError, match="CRC32C") as info:
        _masker().mask("orders", 2, bytes(data))
    assert "jane" not in str(info.value)


@pytest.mark.parametrize("codec_bits", [5, 6, 7])
def test_unknown_codec_fails_closed(codec_bits: int) -> None:
    data = bytearray(encode_batch(_batch([json.dumps(ORDER).encode()])))
    struct.pack_into(">h", data, 21, codec_bits)
    struct.pack_into(">I", data, 17, crc32c.crc32c(memoryview(data)[21:]))
    with pytest.raises(MaskingError, match="unknown codec"):
        _masker().mask("orders", 0, bytes(data))


def test_corrupt_compressed_records_fail_closed() -> None:
    data = bytearray(encode_batch(_batch([json.dumps(ORDER).encode()], Compression.ZSTD)))
    data[70] ^= 0xFF
    struct.pack_into(">I", data, 17, crc32c.crc32c(memoryview(data)[21:]))
    with pytest.raises(MaskingError):
        _masker().mask("orders", 0, bytes(data))


def test_legacy_message_sets_fail_closed() -> None:
    from kafka.record.legacy_records import LegacyRecordBatchBuilder

    builder = LegacyRecordBatchBuilder(1, 0, 1 << 20)
    builder.append(0, 1_700_000_000_000, None, json.dumps(ORDER).encode())
    with pytest.raises(MaskingError, match="legacy"):
        _masker().mask("orders", 0, bytes(builder.build()))


def test_truncated_final_batch_is_dropped_not_leaked() -> None:
    whole = bytes(encode_batch(_batch([b'{"ok": 1}'])))
    partial = bytes(encode_batch(_batch([json.dumps(ORDER).encode()], base_offset=501)))[:-10]
    outcome = _masker().mask("orders", 0, whole + partial)
    assert outcome.records == whole
    assert b"jane" not in outcome.records


def test_control_batch_with_foreign_records_fails_closed() -> None:
    fake = RecordBatch(0, 0, 0x20, 0, 1, 1, -1, -1, -1,
                       [Record(0, 0, 0, None, json.dumps(ORDER).encode())])
    with pytest.raises(MaskingError, match="control"):
        _masker().mask("orders", 0, bytes(encode_batch(fake)))


def test_unexpected_errors_fail_closed_without_content() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    masker = GrantMasker(grant_with(rule(fields=("a",), detectors=("email",))), SECRET)
    try:
        outcome = masker.mask("orders", 0, bytes(encode_batch(_batch([deep]))))
    except MaskingError:
        return
    (batch,), _ = decode_batches(outcome.records)
    assert batch.records[0].value in (deep, BINARY_REPLACEMENT)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (rule(fields=("a",), strategy="scramble"), "unknown masking strategy"),
        (rule(detectors=("passport",)), "unknown detector"),
        (rule(pattern="(unclosed"), "bad pattern"),
        (rule(fields=("a..b",)), "malformed"),
        (rule(fields=("a",), apply_to=("body",)), "apply_to"),
        (rule(), "names no fields"),
        (rule(fields=("a",), strategy="keep_last", keep_last=-1), "negative"),
    ],
)
def test_bad_rules_are_refused_up_front(bad: object, message: str) -> None:
    with pytest.raises(MaskingError, match=message):
        GrantMasker(grant_with(bad), SECRET)  # type: ignore[arg-type]


def test_hash_needs_a_secret() -> None:
    with pytest.raises(MaskingError, match="secret"):
        GrantMasker(grant_with(rule(fields=("a",), strategy="hash")), b"")


def test_json_after_a_byte_order_mark_is_still_masked() -> None:
    masker = GrantMasker(grant_with(rule(fields=("customer.email",))), SECRET)
    raw = "\ufeff".encode() + json.dumps(ORDER).encode()
    (batch,), _ = _mask_values(masker, [raw])
    assert b"jane@example.com" not in (batch.records[0].value or b"")


def test_paths_mask_only_where_they_lead() -> None:
    masker = GrantMasker(grant_with(
        rule(name="spread", fields=("a.b[*].c",)),
        rule(name="keys", fields=("x.y.z",)),
        rule(name="index", fields=("list[1].v",)),
    ), SECRET)
    doc = {"a": [{"c": "not-under-b"}], "x": [{"z": "not-under-y"}],
           "list": [{"v": "first"}, {"v": "second"}],
           "other": {"b": [{"c": "other"}]}}
    (batch,), counts = _mask_values(masker, [json.dumps(doc).encode()])
    assert _doc(batch) == {**doc, "list": [{"v": "first"}, {"v": REDACTED}]}
    assert counts["spread"] == counts["keys"] == 0 and counts["index"] == 1
    doc2 = {"a": {"b": {"k1": {"c": "1"}, "k2": {"c": "2"}, "k3": "scalar"}}}
    (batch,), counts = _mask_values(masker, [json.dumps(doc2).encode()])
    assert _doc(batch) == {"a": {"b": {"k1": {"c": REDACTED}, "k2": {"c": REDACTED},
                                       "k3": "scalar"}}}
    assert counts["spread"] == 2
