"""Record-batch compression codecs (gzip, snappy, lz4 frame, zstd) with bounded decompression.

Kafka names the codec in the low three bits of a batch's attributes. Everything here goes
through cramjam (Rust-backed) so the hot path never runs a pure-Python codec. Decompression
never produces more than a caller-given limit: a hostile "zip bomb" batch costs at most that
much memory and then fails with `DecompressionLimitExceeded`.

Snappy is written with the xerial block framing that the Java client uses (and reads both
xerial-framed and raw snappy, as librdkafka and older producers may send either).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from enum import IntEnum
from typing import Any

import cramjam


class Compression(IntEnum):
    """The codec ids Kafka stores in the attributes of a magic-2 record batch."""

    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4


class CompressionError(ValueError):
    """Compressed bytes could not be decompressed (corrupt, or an unknown codec)."""


class DecompressionLimitExceeded(CompressionError):
    """Decompressed data would exceed the configured limit (possibly a decompression bomb)."""


#: Default ceiling for one batch's decompressed records (Kafka's default max.message.bytes is
#: ~1 MiB, fetch.max.bytes 50 MiB; a single batch larger than this is not worth trusting).
DEFAULT_MAX_DECOMPRESSED = 64 * 1024 * 1024

_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = _XERIAL_MAGIC + struct.pack(">ii", 1, 1)
_XERIAL_BLOCK = 32 * 1024
_BE_INT = struct.Struct(">i")
_OVERFLOW_HINT = "failed to write whole buffer"


def compress(codec: int, data: bytes | bytearray | memoryview) -> bytes:
    """Compress a batch's records section the way Kafka clients expect for that codec."""
    if codec == Compression.ZSTD:
        return bytes(cramjam.zstd.compress(data))
    if codec == Compression.LZ4:
        # cramjam writes an LZ4 frame with independent blocks, which Kafka's readers accept.
        return bytes(cramjam.lz4.compress(data))
    if codec == Compression.GZIP:
        return bytes(cramjam.gzip.compress(data))
    if codec == Compression.SNAPPY:
        return _xerial_compress(data)
    if codec == Compression.NONE:
        return bytes(data)
    raise CompressionError(f"unknown compression codec id {codec}")


def decompress(
    codec: int, data: bytes | bytearray | memoryview, limit: int = DEFAULT_MAX_DECOMPRESSED
) -> bytes:
    """Decompress one batch's records section, never producing more than `limit` bytes."""
    if codec == Compression.SNAPPY:
        return _snappy_decompress(data, limit)
    if codec == Compression.ZSTD:
        return _bounded(cramjam.zstd.decompress_into, data, limit, "zstd")
    if codec == Compression.LZ4:
        return _bounded(cramjam.lz4.decompress_into, data, limit, "lz4")
    if codec == Compression.GZIP:
        return _bounded(cramjam.gzip.decompress_into, data, limit, "gzip")
    if codec == Compression.NONE:
        if len(data) > limit:
            raise DecompressionLimitExceeded(f"records section of {len(data)} bytes over limit")
        return bytes(data)
    raise CompressionError(f"unknown compression codec id {codec}")


def _bounded(
    decompress_into: Callable[[Any, bytearray], int],
    data: bytes | bytearray | memoryview,
    limit: int,
    name: str,
) -> bytes:
    """Decompress into fixed buffers that grow up to `limit`, so memory stays bounded."""
    size = min(limit, max(64 * 1024, 6 * len(data)))
    while True:
        out = bytearray(size)
        try:
            n = decompress_into(data, out)
        except cramjam.DecompressionError as exc:
            if _OVERFLOW_HINT not in str(exc):
                raise CompressionError(f"corrupt {name} data in record batch") from None
            if size >= limit:
                raise DecompressionLimitExceeded(
                    f"{name} records section decompresses to more than {limit} bytes"
                ) from None
            size = min(limit, size * 4)
            continue
        if n == size and size < limit:
            # A completely full buffer may hide more output: retry with room to spare.
            size = min(limit, size * 4)
            continue
        if n == size:
            raise DecompressionLimitExceeded(
                f"{name} records section decompresses to {limit} bytes or more"
            )
        return bytes(memoryview(out)[:n])


def _xerial_compress(data: bytes | bytearray | memoryview) -> bytes:
    """Snappy in xerial blocks of 32 KiB, each prefixed by its big-endian compressed length."""
    view = memoryview(data)
    parts = [_XERIAL_HEADER]
    for start in range(0, len(view), _XERIAL_BLOCK):
        block = bytes(cramjam.snappy.compress_raw(view[start : start + _XERIAL_BLOCK]))
        parts.append(_BE_INT.pack(len(block)))
        parts.append(block)
    return b"".join(parts)


def _snappy_decompress(data: bytes | bytearray | memoryview, limit: int) -> bytes:
    """Read xerial-framed snappy (Java clients) or a raw snappy block (some other producers)."""
    raw = bytes(data)
    try:
        if len(raw) >= 16 and raw[:8] == _XERIAL_MAGIC:
            parts = []
            total = 0
            pos = 16
            end = len(raw)
            while pos < end:
                if pos + 4 > end:
                    raise CompressionError("truncated xerial snappy block length")
                (size,) = _BE_INT.unpack_from(raw, pos)
                pos += 4
                if size < 0 or pos + size > end:
                    raise CompressionError("impossible xerial snappy block length")
                block = raw[pos : pos + size]
                pos += size
                total += cramjam.snappy.decompress_raw_len(block)
                if total > limit:
                    raise DecompressionLimitExceeded(
                        f"snappy records section decompresses to more than {limit} bytes"
                    )
                parts.append(bytes(cramjam.snappy.decompress_raw(block)))
            return b"".join(parts)
        if cramjam.snappy.decompress_raw_len(raw) > limit:
            raise DecompressionLimitExceeded(
                f"snappy records section decompresses to more than {limit} bytes"
            )
        return bytes(cramjam.snappy.decompress_raw(raw))
    except cramjam.DecompressionError:
        raise CompressionError("corrupt snappy data in record batch") from None
