"""The kernel relay (splice) between real TCP sockets: exact byte counts, frame boundaries
kept, early ends and resets reported, backpressure kept, and the socket left as found."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from streamctl.kafka.framing import encode_frame
from streamctl.tunnel import splice
from streamctl.tunnel.frames import FrameReader, UnfinishedFrame

pytestmark = pytest.mark.skipif(not splice.AVAILABLE, reason="splice(2) is Linux-only")


@asynccontextmanager
async def tcp_pair() -> AsyncIterator[tuple[trio.SocketStream, trio.SocketStream]]:
    """Two ends of one loopback TCP connection (the tunnel relays only between such)."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with listeners[0]:
        near = await trio.open_tcp_stream("127.0.0.1", port)
        far = await listeners[0].accept()
        async with near, far:
            yield near, far


async def _read_exactly(stream: trio.SocketStream, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        chunk = await stream.receive_some(count - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


@pytest.mark.parametrize("size", [5, 70_000, 3 * 1024 * 1024 + 17])
def test_a_frame_moves_whole_and_the_next_one_stays_readable(size: int) -> None:
    payload = os.urandom(size)
    following = encode_frame(b"next frame")

    async def main() -> None:
        async with tcp_pair() as (broker, tunnel_up), tcp_pair() as (tunnel_down, client):
            reader = FrameReader(tunnel_up, 64 << 20, "broker")
            async with trio.open_nursery() as nursery:
                async def broker_sends() -> None:
                    await broker.send_all(encode_frame(payload) + following)

                nursery.start_soon(broker_sends)
                got = bytearray()

                async def client_reads() -> None:
                    got.extend(await _read_exactly(client, len(payload)))

                nursery.start_soon(client_reads)
                assert await reader.next_size() == len(payload)
                await reader.relay(len(payload), tunnel_down)
            assert bytes(got) == payload
            # the relay took no byte of the following frame, and left the socket waking
            # for single bytes again
            assert await reader.next_payload() == b"next frame"
            lowat = tunnel_up.socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT)
            assert lowat == 1
            reader.close()

    trio.run(main)


def test_a_source_that_ends_early_is_an_unfinished_frame() -> None:
    async def main() -> None:
        async with tcp_pair() as (broker, tunnel_up), tcp_pair() as (tunnel_down, client):
            reader = FrameReader(tunnel_up, 64 << 20, "broker")
            await broker.send_all(encode_frame(b"y" * 100_000)[:50_004])
            await broker.aclose()
            assert await reader.next_size() == 100_000
            with pytest.raises(UnfinishedFrame, match="50000 bytes"):
                await reader.relay(100_000, tunnel_down)
            reader.close()
            assert len(await _read_exactly(client, 50_000)) == 50_000

    trio.run(main)


def test_a_slow_client_holds_the_relay_back() -> None:
    """At most a pipe's worth plus socket buffers is in flight: the broker is not drained."""
    size = 16 * 1024 * 1024

    async def main() -> None:
        async with tcp_pair() as (broker, tunnel_up), tcp_pair() as (tunnel_down, client):
            # small kernel buffers, so what is in flight is what the relay itself holds
            for end, option in ((broker, socket.SO_SNDBUF), (tunnel_up, socket.SO_RCVBUF),
                                (tunnel_down, socket.SO_SNDBUF), (client, socket.SO_RCVBUF)):
                end.socket.setsockopt(socket.SOL_SOCKET, option, 128 * 1024)
            reader = FrameReader(tunnel_up, size + 1, "broker")
            sent = 0

            async def broker_sends() -> None:
                nonlocal sent
                await broker.send_all(size.to_bytes(4, "big"))
                block = b"z" * (1 << 20)
                while sent < size:
                    await broker.send_all(block)
                    sent += len(block)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(broker_sends)
                assert await reader.next_size() == size
                nursery.start_soon(reader.relay, size, tunnel_down)
                await trio.sleep(0.5)  # nobody reads the client side
                assert sent < 4 * 1024 * 1024, f"{sent} of {size} bytes left the broker"
                total = len(await _read_exactly(client, size))
                assert total == size
            reader.close()

    trio.run(main)


def test_a_reset_client_is_a_broken_resource() -> None:
    async def main() -> None:
        async with tcp_pair() as (broker, tunnel_up), tcp_pair() as (tunnel_down, client):
            reader = FrameReader(tunnel_up, 64 << 20, "broker")
            client.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                     b"\x01\x00\x00\x00\x00\x00\x00\x00")
            client.socket.close()  # a reset, not a clean close
            size = 8 * 1024 * 1024

            async def broker_sends() -> None:
                await broker.send_all(size.to_bytes(4, "big") + b"q" * size)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(broker_sends)
                assert await reader.next_size() == size
                with pytest.raises(trio.BrokenResourceError, match="relaying"):
                    await reader.relay(size, tunnel_down)
                nursery.cancel_scope.cancel()
            reader.close()

    trio.run(main)


@pytest.mark.parametrize("size", [300_000, 3 * 1024 * 1024 + 5])
def test_a_large_frame_read_whole_arrives_in_pieces_and_leaves_the_socket_as_found(
    size: int,
) -> None:
    """Reading a big frame asks to be woken per large piece; the last piece still wakes it."""
    payload = os.urandom(size)

    async def main() -> None:
        async with tcp_pair() as (client, tunnel_side):
            reader = FrameReader(tunnel_side, 64 << 20, "client")
            wire = encode_frame(payload) + encode_frame(b"small")

            async def trickle() -> None:
                for start in range(0, len(wire), 50_000):
                    await client.send_all(wire[start : start + 50_000])
                    await trio.sleep(0.001)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(trickle)
                with trio.fail_after(20):
                    assert await reader.next_payload() == payload
                    assert await reader.next_payload() == b"small"
            lowat = tunnel_side.socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT)
            assert lowat == 1

    trio.run(main)


@pytest.mark.parametrize("prefix_size", [8, splice.MAX_PREFIX, splice.MAX_PREFIX + 1])
@pytest.mark.parametrize("spliced", [True, False])
def test_a_prefix_goes_out_first_and_whole(prefix_size: int, spliced: bool) -> None:
    """What the tunnel read of a frame (size, correlation id...) precedes the relayed rest,
    exactly once, whether the rest is spliced or copied and whatever the prefix's size."""
    prefix = os.urandom(prefix_size)
    payload = os.urandom(700_000)

    async def main() -> None:
        async with tcp_pair() as (broker, tunnel_up), tcp_pair() as (tunnel_down, client):
            reader = FrameReader(tunnel_up, 64 << 20, "broker")
            # a stream without a plain socket takes the copying path
            sink: trio.abc.SendStream = (tunnel_down if spliced
                                         else trio.StapledStream(tunnel_down, tunnel_down))
            got = bytearray()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(broker.send_all, encode_frame(payload))

                async def client_reads() -> None:
                    got.extend(await _read_exactly(client, prefix_size + len(payload)))

                nursery.start_soon(client_reads)
                assert await reader.next_size() == len(payload)
                await reader.relay(len(payload), sink, prefix=prefix)
            assert bytes(got) == prefix + payload
            reader.close()

    trio.run(main)
