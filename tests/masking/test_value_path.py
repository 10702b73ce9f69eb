"""The value-only masking path (no Record objects) gives what decode + mask + encode gives.

Rules that touch only values take `replace_values` over the raw record layout. This
property test builds batches of every codec with keys, headers, null and empty values,
JSON with and without secrets, text and binary, and checks the masked bytes and counts
equal a reference made the plain way: decode every record, mask it, encode the batch.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamctl.kafka.compression import Compression
from streamctl.kafka.records import Record, RecordBatch, decode_batches, encode_batch
from streamctl.masking import RECORDS_SEEN, GrantMasker, mask_record
from tests.masking.grants import SECRET, grant_with, rule

values = st.one_of(
    st.none(),
    st.just(b""),
    st.builds(lambda e, c: json.dumps({"customer": {"email": e, "x": 1},
                                       "items": [{"card": c}, {"sku": "s"}]}).encode(),
              st.text("abc@.", min_size=1, max_size=12), st.text("0123456789", max_size=19)),
    st.builds(lambda n: json.dumps({"note": n}).encode(), st.text(max_size=30)),
    st.binary(max_size=40),
    st.text(max_size=200).map(str.encode),
)
headers = st.lists(st.tuples(st.text(max_size=5), st.one_of(st.none(), st.binary(max_size=8))),
                   max_size=2).map(tuple)


@st.composite
def batches(draw: st.DrawFn) -> bytes:
    out = []
    offset = 0
    for _ in range(draw(st.integers(1, 3))):
        count = draw(st.integers(1, 8))
        records = [Record(0, draw(st.integers(0, 70_000)), i,
                          draw(st.one_of(st.none(), st.binary(max_size=10))),
                          draw(values), draw(headers))
                   for i in range(count)]
        codec = draw(st.sampled_from(list(Compression)))
        out.append(bytes(encode_batch(RecordBatch(
            offset, 3, codec, count - 1, 1_700_000_000_000, 1_700_000_000_100,
            -1, -1, -1, records))))
        offset += count
    return b"".join(out)


def _reference(masker: GrantMasker, data: bytes) -> tuple[bytes, dict[str, int]]:
    plan = masker._plan("orders")
    assert plan is not None
    counts = dict.fromkeys(plan.rule_names, 0)
    counts[RECORDS_SEEN] = 0
    parts = []
    for batch in decode_batches(data)[0]:
        counts[RECORDS_SEEN] += len(batch.records)
        masked = [mask_record(r, plan, counts) for r in batch.records]
        if any(m is not r for m, r in zip(masked, batch.records, strict=True)):
            batch.records = masked
        parts.append(bytes(encode_batch(batch)))
    return b"".join(parts), counts


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=batches(), strategy=st.sampled_from(["redact", "keep_last", "hash", "null", "drop"]),
       detectors=st.booleans())
def test_value_path_matches_decode_mask_encode(data: bytes, strategy: str,
                                               detectors: bool) -> None:
    rules = [rule(name="paths", fields=("customer.email", "items[*].card"), strategy=strategy,
                  keep_last=4)]
    if detectors:
        rules.append(rule(name="found", detectors=("email", "card"), strategy=strategy))
    masker = GrantMasker(grant_with(*rules), SECRET)
    outcome = masker.mask("orders", 0, data)
    expected, counts = _reference(masker, data)
    assert outcome.records == expected
    assert dict(outcome.counts) == counts
