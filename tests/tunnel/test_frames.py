"""The tunnel's frame reader and writer on bytes, cut at every awkward place."""

from __future__ import annotations

import struct

import pytest
import trio
import trio.testing

from streamctl.kafka.errors import ClientProtocolError, FrameTooLarge
from streamctl.kafka.framing import encode_frame
from streamctl.tunnel.frames import FrameReader, UnfinishedFrame, write_frame


class Chunks(trio.abc.ReceiveStream):
    """Bytes handed out `size` at a time, like a socket that delivers in small pieces."""

    def __init__(self, data: bytes, size: int) -> None:
        self.data, self.size, self.pos = data, size, 0

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        n = min(self.size, max_bytes or self.size)
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    async def aclose(self) -> None:
        pass


PAYLOADS = [b"x" * 70_001, b"a", b"bc" * 10, b"\x00" * 70_000]
WIRE = b"".join(encode_frame(p) for p in PAYLOADS)


@pytest.mark.parametrize("chunk", [3, 5, 4096, 65_537, 1 << 22])
def test_payloads_come_out_whole_and_in_order(chunk: int) -> None:
    async def main() -> list[bytes]:
        reader = FrameReader(Chunks(WIRE, chunk), 1 << 20, "broker")
        out = []
        while (payload := await reader.next_payload()) is not None:
            out.append(payload)
        return out

    assert trio.run(main) == PAYLOADS


@pytest.mark.parametrize("chunk", [7, 4096, 1 << 22])
def test_relay_forwards_a_frame_and_keeps_what_follows(chunk: int) -> None:
    async def main() -> tuple[bytes, bytes | None]:
        reader = FrameReader(Chunks(WIRE, chunk), 1 << 20, "broker")
        sink = trio.testing.MemorySendStream()
        size = await reader.next_size()
        assert size == len(PAYLOADS[0])
        head = await reader.take(4)
        await reader.relay(size - 4, sink)
        relayed = head + bytes(sink.get_data_nowait())
        return relayed, await reader.next_payload()

    relayed, following = trio.run(main)
    assert relayed == PAYLOADS[0]
    assert following == PAYLOADS[1]


def test_errors_name_the_problem() -> None:
    async def read(data: bytes, peer: str = "client") -> bytes | None:
        return await FrameReader(Chunks(data, 2), 1 << 20, peer).next_payload()

    with pytest.raises(UnfinishedFrame, match="6 bytes"):
        trio.run(read, encode_frame(b"abcdef")[:6])
    with pytest.raises(UnfinishedFrame):
        trio.run(read, b"\x00\x00")
    assert trio.run(read, b"") is None
    with pytest.raises(FrameTooLarge, match="above the"):
        trio.run(read, struct.pack(">i", 2 << 20) + b"....")
    with pytest.raises(ClientProtocolError, match="TLS handshake"):
        trio.run(read, b"\x16\x03\x01\x02\x00\x01\x00\x01")


def test_write_frame_small_and_large() -> None:
    async def main() -> bytes:
        sink = trio.testing.MemorySendStream()
        assert await write_frame(sink, b"hi") == 6
        assert await write_frame(sink, b"z" * 100_000) == 100_004
        return bytes(sink.get_data_nowait())

    assert trio.run(main) == encode_frame(b"hi") + encode_frame(b"z" * 100_000)
