"""Types of the C record codec; streamctl.kafka.records holds the reference code and docs."""

from collections.abc import Sequence

from streamctl.kafka.records import Record

_Buffer = bytes | bytearray | memoryview

def init(record_type: type[Record], error_type: type[Exception], /) -> None: ...
def decode_records(
    buf: _Buffer, pos: int, size: int, count: int, base_offset: int, starts: list[int], /
) -> list[Record]: ...
def encode_records(records: Sequence[Record], parts: list[bytes], /) -> None: ...
def record_layout(
    buf: _Buffer, pos: int, size: int, count: int, base_offset: int, /
) -> list[int]: ...
def bind_sha256(path: str, /) -> bool: ...
def record_digests(
    buf: _Buffer, pos: int, size: int, count: int, base_offset: int, /
) -> list[str]: ...
