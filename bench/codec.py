"""Record-batch round trip (decode, re-encode, same codec) against kafka-python and aiokafka.

Issue 3, must-show 5: 1000 JSON records of ~300 B in one batch, per codec. Every
implementation starts from the same bytes (built by kafka-python's builder), decodes every
record (key, value, headers, offset, timestamp) and builds a new batch with the same codec,
producer state and records. Times are best-of-N on one core; figures are records per second
and our/their ratios.
"""

from __future__ import annotations

from collections.abc import Callable

from aiokafka.record.default_records import DefaultRecordBatch as AioBatch
from aiokafka.record.default_records import DefaultRecordBatchBuilder as AioBuilder
from kafka.record.default_records import DefaultRecordBatch as KpBatch
from kafka.record.default_records import DefaultRecordBatchBuilder as KpBuilder

from bench import kafka_python_codecs
from bench.data import BASE_TIMESTAMP, json_records
from bench.framework import BenchOptions, SectionResult, best_of
from streamctl.kafka.compression import Compression
from streamctl.kafka.records import (
    CRC32C_HARDWARE,
    RECORDS_ACCELERATED,
    decode_batches,
    encode_batch,
)

RECORDS = 1000
BATCH_LIMIT = 1 << 24


def source_batch(codec: int, values: list[bytes]) -> bytes:
    """The shared input: one batch as kafka-python's producer would build it."""
    builder = KpBuilder(2, codec, False, -1, -1, -1, BATCH_LIMIT)
    for offset, value in enumerate(values):
        builder.append(offset, BASE_TIMESTAMP + offset, None, value, [])
    return bytes(builder.build())


def ours(data: bytes, reuse_unchanged: bool) -> Callable[[], object]:
    """Our round trip; the headline figures serialise every record again (no reuse)."""

    def round_trip() -> object:
        batches, _ = decode_batches(data)
        return [encode_batch(b, reuse_unchanged=reuse_unchanged) for b in batches]

    return round_trip


def theirs(batch_cls: type, builder_cls: type, data: bytes) -> Callable[[], object]:
    """The same round trip through another library's public record classes."""

    def round_trip() -> object:
        batch = batch_cls(bytearray(data))
        builder = builder_cls(2, batch.compression_type, batch.is_transactional,
                              batch.producer_id, batch.producer_epoch, batch.base_sequence,
                              BATCH_LIMIT)
        append = builder.append
        for record in batch:
            append(record.offset, record.timestamp, record.key, record.value, record.headers)
        return builder.build()

    return round_trip


def run(options: BenchOptions) -> SectionResult:
    kafka_python_codecs.install()
    values = json_records(RECORDS)
    result = SectionResult(
        title=f"Record-batch round trip, {RECORDS} JSON records of "
        f"~{sum(map(len, values)) // len(values)} B (records/s, one core)",
        columns=["codec", "streamctl", "kafka-python", "aiokafka (Cython)",
                 "vs kafka-python", "vs aiokafka", "streamctl, reuse", "reuse vs aiokafka"],
    )
    for codec in Compression:
        name = codec.name.lower()
        data = source_batch(codec, values)
        rates = {}
        for impl, fn in (
            ("ours", ours(data, reuse_unchanged=False)),
            ("ours_reuse", ours(data, reuse_unchanged=True)),
            ("kafka_python", theirs(KpBatch, KpBuilder, data)),
            ("aiokafka", theirs(AioBatch, AioBuilder, data)),
        ):
            rates[impl] = RECORDS / best_of(fn, options.repeats, number=3)
        vs_kp = rates["ours"] / rates["kafka_python"]
        vs_aio = rates["ours"] / rates["aiokafka"]
        result.rows.append([
            name, f"{rates['ours']:,.0f}", f"{rates['kafka_python']:,.0f}",
            f"{rates['aiokafka']:,.0f}", f"{vs_kp:.2f}x", f"{vs_aio:.2f}x",
            f"{rates['ours_reuse']:,.0f}", f"{rates['ours_reuse'] / rates['aiokafka']:.2f}x",
        ])
        result.figures[f"codec_{name}_records_s"] = rates["ours"]
        result.figures[f"codec_{name}_kafka_python_records_s"] = rates["kafka_python"]
        result.figures[f"codec_{name}_aiokafka_records_s"] = rates["aiokafka"]
        result.figures[f"codec_vs_kafka_python_{name}_ratio"] = vs_kp
        result.figures[f"codec_vs_aiokafka_{name}_ratio"] = vs_aio
        result.figures[f"codec_{name}_reuse_records_s"] = rates["ours_reuse"]
        result.figures[f"codec_reuse_vs_aiokafka_{name}_ratio"] = (
            rates["ours_reuse"] / rates["aiokafka"])
    for name in ("none", "zstd"):
        result.targets[f"codec_vs_kafka_python_{name}_ratio"] = (2.0, "issue 3 must-show 5")
        result.targets[f"codec_vs_aiokafka_{name}_ratio"] = (0.5, "issue 3 must-show 5")
    result.figures["crc32c_hardware"] = 1.0 if CRC32C_HARDWARE else 0.0
    result.notes.append(
        "kafka-python has no snappy/lz4/zstd package here: its own framing runs over cramjam, "
        "the library aiokafka and streamctl use (bench/kafka_python_codecs.py)."
    )
    result.notes.append(
        "Headline ratios serialise every record again. 'reuse' is the default encode_batch path "
        "(used by masking): records left unchanged keep their decoded bytes; the batch header, "
        "CRC32C and compression are still redone."
    )
    result.notes.append(f"CRC32C: crc32c C extension, hardware instructions: {CRC32C_HARDWARE}")
    result.notes.append(
        f"Record loops in the C accelerator: {RECORDS_ACCELERATED}"
        + ("" if RECORDS_ACCELERATED else " (pure Python: STREAMCTL_PURE_PYTHON or no build)")
    )
    return result
