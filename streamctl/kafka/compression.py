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
        # Kafka's Java reader refuses linked (dependent) blocks, which cramjam's one-shot
        # compress() writes; the streaming compressor is told to keep blocks independent.
        compressor = cramjam.lz4.Compressor(content_checksum=False, block_linked=False)
        compressor.compress(data)
        return bytes(compressor.finish())
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
        return _bounded(cramjam.zstd.decompress_into, data, limit, "zstd", _zstd_size(data))
    if codec == Compression.LZ4:
        return _bounded(cramjam.lz4.decompress_into, data, limit, "lz4", _lz4_size(data))
    if codec == Compression.GZIP:
        return _bounded(cramjam.gzip.decompress_into, data, limit, "gzip", _gzip_size(data))
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
    hint: int | None,
) -> bytes:
    """Decompress into fixed buffers that grow up to `limit`, so memory stays bounded.

    `hint` is the size the compressed data announces; it only sizes the first buffer (one
    byte larger, so an exact fit is told apart from overflow) and is never trusted beyond.
    """
    if hint is not None:
        if hint > limit:
            raise DecompressionLimitExceeded(
                f"{name} records section announces {hint} bytes, over the {limit}-byte limit"
            )
        size = hint + 1
    else:
        size = min(limit, max(64 * 1024, 8 * len(data)))
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


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_LZ4_MAGIC = b"\x04\x22\x4d\x18"


def _zstd_size(data: bytes | bytearray | memoryview) -> int | None:
    """Frame_Content_Size from a zstd frame header, when the producer wrote one."""
    if len(data) < 6 or bytes(data[:4]) != _ZSTD_MAGIC:
        return None
    descriptor = data[4]
    field = (1 if descriptor & 0x20 else 0, 2, 4, 8)[descriptor >> 6]
    if not field:
        return None
    pos = 5 + (0 if descriptor & 0x20 else 1) + (0, 1, 2, 4)[descriptor & 0x03]
    if len(data) < pos + field:
        return None
    size = int.from_bytes(data[pos : pos + field], "little")
    return size + 256 if field == 2 else size


def _lz4_size(data: bytes | bytearray | memoryview) -> int | None:
    """Content size from an LZ4 frame header, when its content-size flag is set."""
    if len(data) < 15 or bytes(data[:4]) != _LZ4_MAGIC or not data[4] & 0x08:
        return None
    return int.from_bytes(data[6:14], "little")


def _gzip_size(data: bytes | bytearray | memoryview) -> int | None:
    """ISIZE from the gzip trailer: the size of the last member (mod 2**32), a good first guess."""
    if len(data) < 18:
        return None
    return int.from_bytes(data[-4:], "little")


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
