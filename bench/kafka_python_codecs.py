"""Give kafka-python's own codec code a compressor underneath, for interop tests and benches.

kafka-python 3.x reaches snappy, lz4 and zstd through optional packages (python-snappy,
lz4, zstandard) that streamctl does not depend on. Rather than add three packages for
comparison only, this swaps in cramjam (the same library aiokafka and streamctl use) under
kafka-python's own framing code: its xerial snappy blocking and its record-batch builder
and reader still run unchanged, so what is compared is the record code, not the codec.
"""

from __future__ import annotations

from typing import Any

import cramjam


class _SnappyModule:
    """The two functions of python-snappy that kafka.codec calls."""

    @staticmethod
    def compress(data: Any) -> bytes:
        return bytes(cramjam.snappy.compress_raw(data))

    @staticmethod
    def decompress(data: Any) -> bytes:
        return bytes(cramjam.snappy.decompress_raw(data))


def _lz4_encode(data: Any) -> bytes:
    # independent blocks, as Kafka requires (kafka-python's lz4 package does the same)
    compressor = cramjam.lz4.Compressor(content_checksum=False, block_linked=False)
    compressor.compress(data)
    return bytes(compressor.finish())


def _lz4_decode(data: Any) -> bytes:
    return bytes(cramjam.lz4.decompress(data))


def _zstd_encode(data: Any) -> bytes:
    return bytes(cramjam.zstd.compress(data))


def _zstd_decode(data: Any) -> bytes:
    return bytes(cramjam.zstd.decompress(data))


def install() -> None:
    """Make kafka-python able to build and read snappy, lz4 and zstd record batches."""
    import kafka.codec as codec
    import kafka.record.default_records as default_records

    if codec.snappy is None:
        codec.snappy = _SnappyModule
    if codec.lz4 is None and codec.lz4f is None and codec.lz4framed is None:
        codec.lz4 = _SnappyModule  # only checked for "is not None" by has_lz4()
        default_records.lz4_encode = _lz4_encode
        default_records.lz4_decode = _lz4_decode
    if codec.zstd is None:
        codec.zstd = _SnappyModule  # only checked for "is not None" by has_zstd()
        default_records.zstd_encode = _zstd_encode
        default_records.zstd_decode = _zstd_decode
