"""GrantMasker: the tunnel's RecordMasker for one grant, applied to fetched record batches.

For a partition of a topic with rules, every complete batch is decoded, each record's value,
key and headers are masked as the rules say, and the batch is re-encoded with the same codec
keeping base offset, leader epoch, attributes (timestamp type, transactional, control),
producer id/epoch, base sequence, timestamps and batch boundaries. Batches in which nothing
changed are passed on as they came (after their CRC was checked); control batches carry no
user data and pass untouched once decoded.

Fail closed: anything that stops a batch from being masked (corrupt bytes, a bad CRC, an
unknown codec, a legacy magic 0/1 message set, an unexpected error) raises MaskingError and
the tunnel answers the partition with an error and no records. A truncated final batch is
dropped rather than passed on, since its records could not be masked; the client fetches
those offsets again and gets them whole.

With 2+ CPUs, a partition of SPLIT_MIN_RECORDS or more records is masked together with a
worker process (pool.py): this thread masks from the start, the worker from the end, in
whole batches (many small ones) or in chunks of values (inside a big batch), until they
meet. This thread never waits for the worker; the bytes are the same either way.
"""

from __future__ import annotations

import operator
import os
import threading
from collections.abc import Sequence

from streamctl.kafka.records import (
    CONTROL_BIT,
    DEFAULT_MAX_DECOMPRESSED,
    LAYOUT_STRIDE,
    Record,
    RecordSection,
    RecordsError,
    decode_batches,
    decode_sections,
    encode_batch,
    iter_batch_headers,
    record_layout,
    replace_values,
)
from streamctl.masking.errors import MaskingError
from streamctl.masking.payload import (
    BINARY_REPLACEMENT,
    PayloadMask,
    mask_payload,
    payload_mask,
)
from streamctl.masking.pool import MaskingWorker
from streamctl.masking.rules import CompiledRule, TopicPlan, compile_rules, plan_for
from streamctl.masking.strategies import derive_hash_key
from streamctl.policy.grant import Grant, MaskingRule
from streamctl.tunnel.hooks import MaskOutcome

#: Count key for the number of records looked at (the other keys are rule names).
RECORDS_SEEN = "records_seen"
_PLAN_CACHE_LIMIT = 4096
_REDACTED_HEADER = BINARY_REPLACEMENT
#: Batches with at least this many records are split with the worker process, if there is one.
SPLIT_MIN_RECORDS = 256
#: With one batch holding more than this share of a partition's records, whole batches are
#: too coarse to share out: the split is made inside the big batches instead.
_MAX_WHOLE_BATCH_SHARE = 0.125


class GrantMasker:
    """Masks fetched records by the masking rules of one grant (a `RecordMasker`)."""

    def __init__(
        self,
        grant: Grant,
        secret: bytes = b"",
        *,
        max_decompressed: int = DEFAULT_MAX_DECOMPRESSED,
        parallel: bool | None = None,
    ) -> None:
        """`parallel`: split large batches with a worker process (default: on 2+ CPUs)."""
        rules: Sequence[MaskingRule] = () if grant.unmasked else grant.masking
        needs_key = any(r.strategy == "hash" for r in rules)
        hash_key = derive_hash_key(grant.grant_id, secret) if needs_key else None
        if parallel is None:
            parallel = (os.cpu_count() or 1) > 1
        self._setup(rules, hash_key, max_decompressed, parallel)

    @classmethod
    def from_rules(
        cls, rules: Sequence[MaskingRule], hash_key: bytes | None, *, max_decompressed: int
    ) -> GrantMasker:
        """A one-thread masker from rules and an already derived hash key (the worker's)."""
        masker = cls.__new__(cls)
        masker._setup(rules, hash_key, max_decompressed, parallel=False)
        return masker

    def _setup(
        self,
        rules: Sequence[MaskingRule],
        hash_key: bytes | None,
        max_decompressed: int,
        parallel: bool,
    ) -> None:
        self._rules: tuple[CompiledRule, ...] = compile_rules(rules, hash_key)
        self._plans: dict[str, TopicPlan | None] = {}
        self._value_masks: dict[int, PayloadMask] = {}
        self._max_decompressed = max_decompressed
        self._worker = (
            MaskingWorker(rules, hash_key, max_decompressed=max_decompressed)
            if parallel and rules else None
        )
        self._worker_lock = threading.Lock()

    @property
    def rules(self) -> tuple[CompiledRule, ...]:
        """The grant's rules, compiled."""
        return self._rules

    @property
    def worker_pid(self) -> int | None:
        """The worker process's id while one runs (for CPU accounting and tests)."""
        return None if self._worker is None else self._worker.pid

    def close(self) -> None:
        """Stop the worker process, if one was started (masking still works afterwards)."""
        if self._worker is not None:
            self._worker.close()

    def sections(self, records: bytes) -> list[RecordSection]:
        """The complete batches of a records field, opened (CRC checked, decompressed)."""
        return decode_sections(records, max_decompressed=self._max_decompressed)[0]

    def mask_section(
        self, topic: str, records: bytes, section: RecordSection
    ) -> tuple[bytes, dict[str, int]]:
        """One opened batch of a value-rules topic masked in this thread, and its counts."""
        plan = self._plan(topic)
        if plan is None:
            raise MaskingError("no masking rule covers the topic")
        counts: dict[str, int] = dict.fromkeys(plan.rule_names, 0)
        counts[RECORDS_SEEN] = 0
        value_mask = self._value_masks[id(plan)]
        return self._mask_sections(topic, records, (section,), value_mask, counts, None), counts

    def _plan(self, topic: str) -> TopicPlan | None:
        try:
            return self._plans[topic]
        except KeyError:
            pass
        if len(self._plans) >= _PLAN_CACHE_LIMIT:
            self._plans.clear()
            self._value_masks.clear()
        plan = self._plans[topic] = plan_for(self._rules, topic)
        if plan is not None:
            self._value_masks[id(plan)] = payload_mask(plan.value)
        return plan

    def needs_masking(self, topic: str) -> bool:
        """True when a rule covers the topic; other topics take the byte-for-byte path."""
        return self._plan(topic) is not None

    def mask(self, topic: str, partition: int, records: bytes) -> MaskOutcome:
        """Mask one partition's records field; raises MaskingError to fail closed."""
        plan = self._plan(topic)
        if plan is None:
            return MaskOutcome(records, {})
        counts: dict[str, int] = dict.fromkeys(plan.rule_names, 0)
        counts[RECORDS_SEEN] = 0
        try:
            out = self._mask_batches(topic, plan, records, counts)
        except MaskingError:
            raise
        except RecordsError as exc:
            raise MaskingError(f"topic {topic!r} partition {partition}: {exc}") from None
        except Exception as exc:  # fail closed on anything unforeseen, without the content
            raise MaskingError(
                f"topic {topic!r} partition {partition}: masking failed ({type(exc).__name__})"
            ) from None
        return MaskOutcome(out, counts)

    def _mask_batches(
        self, topic: str, plan: TopicPlan, records: bytes, counts: dict[str, int]
    ) -> bytes:
        headers = list(iter_batch_headers(records))
        if any(h.magic < 2 for h in headers):
            raise MaskingError("legacy magic 0/1 message set cannot be masked")
        if not (plan.key or plan.header_names or plan.header_values):
            return self._mask_values(topic, plan, records, counts)
        # One pass over the whole records field (no per-batch copies); the truncated final
        # batch, if any, is left out on purpose.
        batches, _ = decode_batches(records, max_decompressed=self._max_decompressed)
        parts: list[bytes | bytearray] = []
        for header, batch in zip(headers, batches, strict=True):
            if batch.is_control:
                if any(r.key is None or len(r.key) < 4 for r in batch.records):
                    raise MaskingError("control batch holds records that are not control records")
                parts.append(records[header.position : header.position + header.size])
                continue
            counts[RECORDS_SEEN] += len(batch.records)
            originals = batch.records
            masked = [mask_record(r, plan, counts) for r in originals]
            if any(map(operator.is_not, masked, originals)):
                batch.records = masked
                parts.append(encode_batch(batch))
            else:
                parts.append(records[header.position : header.position + header.size])
        return b"".join(parts)

    def _mask_values(
        self, topic: str, plan: TopicPlan, records: bytes, counts: dict[str, int]
    ) -> bytes:
        """The hot path when rules touch values only: no Record objects, unchanged bytes kept.

        Batches are opened (CRC checked, decompressed) and their record layout checked as
        strictly as decoding would; only values the mask changed are written anew.
        """
        sections, _ = decode_sections(records, max_decompressed=self._max_decompressed)
        value_mask = self._value_masks[id(plan)]
        worker = self._worker
        total = sum(section.header[12] for section in sections)
        # One share at a time per masker; another thread masking meanwhile works alone.
        if (
            worker is None or total < SPLIT_MIN_RECORDS
            or not self._worker_lock.acquire(blocking=False)
        ):
            return self._mask_sections(topic, records, sections, value_mask, counts, None)
        try:
            if not worker.available():
                return self._mask_sections(topic, records, sections, value_mask, counts, None)
            if max(s.header[12] for s in sections) > total * _MAX_WHOLE_BATCH_SHARE:
                return self._mask_sections(topic, records, sections, value_mask, counts, worker)
            return self._mask_split_batches(topic, records, sections, value_mask, counts, worker)
        finally:
            self._worker_lock.release()

    def _mask_split_batches(
        self,
        topic: str,
        records: bytes,
        sections: Sequence[RecordSection],
        value_mask: PayloadMask,
        counts: dict[str, int],
        worker: MaskingWorker,
    ) -> bytes:
        """Whole batches: this thread masks from the first, the worker from the last, and
        when this thread reaches a batch the worker has sent, the rest are the worker's."""
        last = sections[-1]
        try:
            worker.submit_batches(
                topic, bytes(records[sections[0].position : last.position + last.size]))
        except MaskingError:  # nothing was handed over: this thread masks it all
            return self._mask_sections(topic, records, sections, value_mask, counts, None)
        parts: list[bytes | bytearray] = []
        try:
            for index, section in enumerate(sections):
                if index in worker.poll_chunks():
                    theirs: dict[str, int] = {}
                    taken = worker.take_chunks(index, theirs)
                    if taken is not None:
                        rest = sections[index:]
                        batches = [b for b in taken if type(b) is bytes]
                        expected = sum(s.header[12] for s in rest if not s.header[5] & CONTROL_BIT)
                        if len(batches) != len(rest) or theirs.get(RECORDS_SEEN) != expected:
                            raise MaskingError("the masking worker answered for other batches")
                        for name, n in theirs.items():
                            counts[name] = counts.get(name, 0) + n
                        parts += batches
                        break
                parts.append(self._mask_sections(
                    topic, records, (section,), value_mask, counts, None))
        finally:
            worker.finish_share()
        return b"".join(parts)

    def _mask_sections(
        self,
        topic: str,
        records: bytes,
        sections: Sequence[RecordSection],
        value_mask: PayloadMask,
        counts: dict[str, int],
        worker: MaskingWorker | None,
    ) -> bytes:
        """Mask batches in this thread; with a worker, large ones are split with it."""
        parts: list[bytes | bytearray] = []
        for section in sections:
            original = records[section.position : section.position + section.size]
            if section.header[5] & CONTROL_BIT:
                layout = record_layout(section)
                if any(layout[i] < 4 for i in range(3, len(layout) - 1, LAYOUT_STRIDE)):
                    raise MaskingError("control batch holds records that are not control records")
                parts.append(original)
                continue
            count = section.header[12]
            counts[RECORDS_SEEN] += count
            if worker is not None and count >= SPLIT_MIN_RECORDS:
                masked = _replace_split(section, topic, value_mask, worker, counts)
            else:
                masked = replace_values(section, value_mask, counts)
            parts.append(original if masked is None else masked)
        return b"".join(parts)


def _replace_split(
    section: RecordSection,
    topic: str,
    value_mask: PayloadMask,
    worker: MaskingWorker,
    counts: dict[str, int],
) -> bytearray | None:
    """`replace_values`, with the worker masking the batch's values from the last one back.

    `replace_values` calls the transform once per non-empty value, in order. This thread
    masks from the first value on; the worker masks chunks from the end and sends each when
    done. When this thread reaches the first value of a received chunk, every later value
    is the worker's, so it takes them from there: the two meet wherever their speeds put
    them, and this thread never waits for the worker (on a busy machine it just does more).
    """
    if not worker.available():  # still stopping its previous share, or gone
        return replace_values(section, value_mask, counts)
    try:
        worker.submit_values(
            topic, section.header, bytes(section.data[section.start : section.end]))
    except MaskingError:  # nothing was handed over: this thread masks it all
        return replace_values(section, value_mask, counts)
    chunks = worker.poll_chunks()
    tail: list[bytes | None] = []
    switch = -1  # the index from which values are the worker's, once known
    seen = 0

    def transform(value: bytes, counts: dict[str, int]) -> bytes:
        nonlocal chunks, tail, switch, seen
        index = seen
        seen += 1
        if switch < 0:
            if not index & 31:
                chunks = worker.poll_chunks()
            if index not in chunks:
                return value_mask(value, counts)
            taken = worker.take_chunks(index, counts)
            if taken is None:
                return value_mask(value, counts)
            tail, switch = taken, index
        new = tail[index - switch]
        return value if new is None else new

    try:
        out = replace_values(section, transform, counts)
    finally:
        worker.finish_share()
    if switch >= 0 and seen != switch + len(tail):  # never pass on a half-masked batch
        raise MaskingError("the worker and this thread disagree on the batch's values")
    return out


def mask_record(record: Record, plan: TopicPlan, counts: dict[str, int]) -> Record:
    """The masked record, or the same object when nothing in it needed masking."""
    attributes, ts_delta, offset_delta, key, value, headers = record
    new_value = value
    if value and plan.value:
        new_value = mask_payload(value, plan.value, counts)
    new_key = key
    if key and plan.key:
        new_key = mask_payload(key, plan.key, counts)
    new_headers = headers
    if headers and (plan.header_names or plan.header_values):
        new_headers = _mask_headers(headers, plan, counts)
    if new_value is value and new_key is key and new_headers is headers:
        return record
    fields = (attributes, ts_delta, offset_delta, new_key, new_value, new_headers)
    return _new_record(Record, fields)


_new_record = tuple.__new__  # builds the NamedTuple without its Python-level __new__


def _mask_headers(
    headers: tuple[tuple[str, bytes | None], ...], plan: TopicPlan, counts: dict[str, int]
) -> tuple[tuple[str, bytes | None], ...]:
    """Headers named by a rule are masked whole; detectors run over every header value."""
    out: list[tuple[str, bytes | None]] = []
    changed = False
    for name, value in headers:
        rule = next((r for r in plan.header_names if r.matches_header(name)), None)
        if rule is not None and value is not None:
            counts[rule.name] = counts.get(rule.name, 0) + 1
            changed = True
            if rule.strategy == "drop":
                continue
            if rule.strategy == "null":
                out.append((name, None))
                continue
            try:
                text = value.decode("utf-8")
            except UnicodeDecodeError:
                out.append((name, _REDACTED_HEADER))
                continue
            out.append((name, rule.text_mask(text).encode("utf-8")))
            continue
        if value and plan.header_values:
            masked = mask_payload(value, plan.header_values, counts)
            if masked is not value:
                changed = True
                out.append((name, masked))
                continue
        out.append((name, value))
    return tuple(out) if changed else headers
