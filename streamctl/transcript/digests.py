"""Per-record digests of produced data, and the child process that can compute them.

A digest per produced record is most of what recording a session costs. In pure Python
(walk the record layout, hash key and value with hashlib) it is about a microsecond per
record, taken under the GIL the tunnel's own thread needs. Two ways keep it off that
thread:

* the record codec's C extension (`_records_c.record_digests`) walks and hashes a whole
  records section in one call with the GIL released, using OpenSSL's SHA-256 found through
  hashlib. `DIGESTS_ACCELERATED` says whether it runs; STREAMCTL_PURE_PYTHON=1 turns it
  off, like the record codec's.
* Where it cannot run, `DigestProcess` (see digest_process.py) runs this module as a child
  process that takes the records fields on its stdin and answers the digests on its stdout.

Wire format between the two, one exchange at a time: the child first writes the READY
byte; then each request is `>I length` + a records field, and each reply one kind byte +
`>I length` + payload, where kind is b"D" (payload: the hex digests, 64 ASCII characters
each, in order), b"E" (payload: why the records are undecodable, UTF-8) or b"X" (an
unexpected failure: the caller digests in its own process instead).
"""

from __future__ import annotations

import hashlib
import os
import signal
import struct
from collections.abc import Callable

from streamctl.kafka.errors import KafkaProtocolError
from streamctl.kafka.records import (
    LAYOUT_STRIDE,
    Record,
    RecordBatch,
    RecordSection,
    RecordsError,
    decode_sections,
    encode_batch,
    record_layout,
)

if LAYOUT_STRIDE != 7:  # record_digests unpacks seven layout ints per record
    raise ImportError(f"record_layout has {LAYOUT_STRIDE} ints per record, not 7")

_NULL_LENGTH = b"\xff\xff\xff\xff"
#: A key or value length as `record_digest` hashes it.
_LENGTH_FIELD = struct.Struct(">i")
LENGTH = struct.Struct(">I")
#: Reply kinds of the child process.
DIGESTS, UNDECODABLE, FAILED = b"D", b"E", b"X"
#: The child's first byte: imports done, ready for requests.
READY = b"R"
#: Hex characters per digest.
HEX_SIZE = 64


def record_digests(records: bytes) -> list[str]:
    """`record_digest` of every record in a records field, in order, straight off the bytes.

    The same digests as decoding each record and calling `record_digest(key, value)`, but
    read from the record layout (no Record objects, no CRC check: the broker checks it).
    """
    sections, _tail = decode_sections(records, verify_crc=False)
    if _c_digests is not None:
        digests: list[str] = []
        for section in sections:
            header = section.header
            digests += _c_digests(section.data, section.start, section.end, header[12],
                                  header[0])
        return digests
    return _py_record_digests(sections)


def _py_record_digests(sections: list[RecordSection]) -> list[str]:
    """The reference loop: hashlib per record (what the C extension does in one call)."""
    sha256 = hashlib.sha256
    length = _LENGTH_FIELD.pack
    null = _NULL_LENGTH
    digests: list[str] = []
    append = digests.append
    for section in sections:
        layout = record_layout(section)
        buf = section.data
        fields = iter(layout)  # LAYOUT_STRIDE ints per record, then the end (left out by zip)
        for _s, _b, key_pos, key_len, _v, value_pos, value_len in zip(
            fields, fields, fields, fields, fields, fields, fields, strict=False
        ):
            if key_len >= 0 and value_len >= 0:
                digest = sha256(length(key_len))
                digest.update(buf[key_pos : key_pos + key_len])
                digest.update(length(value_len))
                digest.update(buf[value_pos : value_pos + value_len])
                append(digest.hexdigest())
            else:
                head = null if key_len < 0 else length(key_len) + buf[key_pos : key_pos + key_len]
                tail = (null if value_len < 0
                        else length(value_len) + buf[value_pos : value_pos + value_len])
                append(sha256(head + tail).hexdigest())
    return digests


def split_hex(text: str) -> list[str]:
    """Cut a run of concatenated hex digests into the digests."""
    return [text[i : i + HEX_SIZE] for i in range(0, len(text), HEX_SIZE)]


_c_digests: Callable[[bytes | bytearray, int, int, int, int], list[str]] | None = None


def _select_implementation(accelerated: bool) -> bool:
    """Hash in C (OpenSSL, no GIL) when asked and possible, else with hashlib in Python.

    Returns (and sets DIGESTS_ACCELERATED to) whether C is now in use. C is only used once
    it gives the reference answer on a probe: a mismatch (an unexpected OpenSSL) is not a
    risk taken with audit records.
    """
    global _c_digests, DIGESTS_ACCELERATED
    _c_digests, DIGESTS_ACCELERATED = None, False
    if not accelerated:
        return False
    try:
        import _hashlib

        from streamctl.kafka import _records_c
    except ImportError:
        return False
    path = getattr(_hashlib, "__file__", None)
    if not path or not _records_c.bind_sha256(path):
        return False
    _records_c.init(Record, RecordsError)  # what records.py does when it uses C itself
    probe = [Record(0, 0, 0, b"key", b"value"), Record(0, 0, 1, None, b""),
             Record(0, 0, 2, b"", None)]
    batch = RecordBatch(0, 0, 0, 2, 0, 0, -1, -1, -1, probe)
    (section,), _tail = decode_sections(bytes(encode_batch(batch)), verify_crc=False)
    header = section.header
    try:
        got = _records_c.record_digests(section.data, section.start, section.end, header[12],
                                        header[0])
    except RuntimeError:  # OpenSSL refused to hash
        return False
    if got != _py_record_digests([section]):
        return False
    _c_digests, DIGESTS_ACCELERATED = _records_c.record_digests, True
    return True


#: True when the C extension computes the digests; STREAMCTL_PURE_PYTHON=1 turns it off.
DIGESTS_ACCELERATED: bool = False
_select_implementation(os.environ.get("STREAMCTL_PURE_PYTHON", "") in ("", "0"))


def read_exactly(fd: int, count: int) -> bytes | None:
    """`count` bytes from fd; None at end of stream before the first byte, EOFError after."""
    buf = bytearray(count)
    view = memoryview(buf)
    got = 0
    while got < count:
        n = os.readv(fd, [view[got:]])
        if n == 0:
            if got == 0:
                return None
            raise EOFError(f"stream ended after {got} of {count} bytes")
        got += n
    return bytes(buf)


def write_all(fd: int, *parts: bytes) -> None:
    """Write every part to fd, in order (a pipe may take fewer bytes per call)."""
    for part in parts:
        view = memoryview(part)
        while view:
            view = view[os.write(fd, view) :]


def answer(records: bytes) -> tuple[bytes, bytes]:
    """The child's reply (kind, payload) to one records field."""
    try:
        digests = record_digests(records)
    except KafkaProtocolError as exc:
        return UNDECODABLE, str(exc).encode("utf-8", "replace")
    except Exception:  # a bug, not bad input: the caller digests in its own process
        return FAILED, b""
    return DIGESTS, "".join(digests).encode("ascii")


def serve(reader: int, writer: int) -> None:
    """Answer requests until the parent closes its end (it exited or stopped recording)."""
    write_all(writer, READY)
    while True:
        head = read_exactly(reader, LENGTH.size)
        if head is None:
            return
        (size,) = LENGTH.unpack(head)
        records = read_exactly(reader, size) if size else b""
        if records is None:
            return
        kind, payload = answer(records)
        write_all(writer, kind + LENGTH.pack(len(payload)), payload)


def main() -> None:
    # Ctrl-C in the terminal is for the tunnel: it seals the transcript, which may still need
    # digests from here. The child ends when the parent closes its stdin (or dies).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        serve(0, 1)
    except (EOFError, BrokenPipeError):
        pass


if __name__ == "__main__":
    main()
