"""Direct socket and channel I/O: the trio stream contract kept without scheduler trips.

`DirectSocketStream` must behave as the trio.SocketStream it wraps (bytes exact and in order,
backpressure, EOF, trio's stream errors and never a bare OSError, cancellation), and still let
other tasks run; `send_soon` / `receive_soon` must behave as a channel's send and receive.
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from streamctl.tunnel import splice
from streamctl.tunnel.direct import (
    YIELD_EVERY,
    DirectSocketStream,
    acquire_soon,
    direct_stream,
    receive_soon,
    send_soon,
    unwritten,
)
from tests.tunnel.test_upstream_sasl import Pki

LARGE = 8 * 1024 * 1024


@asynccontextmanager
async def tcp_pair() -> AsyncIterator[tuple[DirectSocketStream, DirectSocketStream]]:
    """Both ends of one loopback TCP connection, each wrapped as the tunnel wraps them."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with listeners[0]:
        near = await trio.open_tcp_stream("127.0.0.1", port)
        far = await listeners[0].accept()
        async with near, far:
            a, b = direct_stream(near), direct_stream(far)
            assert isinstance(a, DirectSocketStream) and isinstance(b, DirectSocketStream)
            yield a, b


def unix_pair() -> tuple[DirectSocketStream, socket.socket]:
    """A direct stream and a plain non-blocking stdlib socket as its peer."""
    mine, peer = trio.socket.socketpair()
    peer_sock = socket.socket(fileno=peer.detach())
    peer_sock.setblocking(False)
    return DirectSocketStream(trio.SocketStream(mine)), peer_sock


def pending_bytes(sock: socket.socket) -> bytes:
    """What the socket has received so far, without waiting (b"" if nothing)."""
    try:
        return sock.recv(1 << 20)
    except BlockingIOError:
        return b""


async def read_exactly(stream: trio.abc.ReceiveStream, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        chunk = await stream.receive_some(min(count - len(data), 256 * 1024))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def reset_by_peer(sock: socket.socket | trio.socket.SocketType) -> None:
    """Close so that the other end sees a reset (RST), not an orderly EOF."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# ------------------------------------------------------------------ bytes


def test_small_writes_arrive_exactly_and_in_order() -> None:
    async def main() -> None:
        async with tcp_pair() as (a, b):
            pieces = [bytes([i]) * (i * 37 + 1) for i in range(100)]
            expected = b"".join(pieces) + b"tail-view"
            got: list[bytes] = []

            async def receive() -> None:
                got.append(await read_exactly(b, len(expected)))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(receive)
                for piece in pieces:
                    await a.send_all(piece)
                await a.send_all(b"")  # nothing to send is still a valid call
                await a.send_all(bytearray(b"tail-"))
                await a.send_all(memoryview(b"xxview")[2:])
            assert got == [expected]

    trio.run(main)


def test_eight_megabytes_both_ways_at_once_keep_every_byte_in_order() -> None:
    """Both ends write 8 MB before reading: the writers must wait for the readers."""
    up, down = os.urandom(LARGE), os.urandom(LARGE)

    async def main() -> None:
        got: dict[str, bytes] = {}
        async with tcp_pair() as (a, b):

            async def receive(name: str, stream: DirectSocketStream) -> None:
                got[name] = await read_exactly(stream, LARGE)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(a.send_all, up)
                nursery.start_soon(b.send_all, bytearray(down))
                nursery.start_soon(receive, "at b", b)
                nursery.start_soon(receive, "at a", a)
        assert got["at b"] == up
        assert got["at a"] == down

    trio.run(main)


def test_a_writer_waits_for_a_slow_reader_and_loses_nothing() -> None:
    """Backpressure: send_all of more than the socket buffers hold does not finish early."""
    payload = os.urandom(LARGE)

    async def main() -> None:
        async with tcp_pair() as (a, b):
            done = trio.Event()

            async def send() -> None:
                await a.send_all(memoryview(payload))
                done.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                await trio.testing.wait_all_tasks_blocked()
                assert not done.is_set()  # the kernel buffers cannot hold 8 MB
                got = bytearray()
                while len(got) < LARGE:
                    got += await b.receive_some(4096)
                    if len(got) % (1 << 20) < 4096:
                        await trio.sleep(0.001)  # a slow reader, now and then
            assert done.is_set()
            assert bytes(got) == payload

    trio.run(main)


# ------------------------------------------------------------------ ends and errors


def test_eof_reads_as_empty_and_receive_some_none_takes_what_is_there() -> None:
    async def main() -> None:
        async with tcp_pair() as (a, b):
            await a.send_all(b"last words")
            await a.send_eof()
            assert await read_exactly(b, 10) == b"last words"
            assert await b.receive_some() == b""
            assert await b.receive_some(5) == b""
            await b.send_all(b"still open the other way")  # half-closed only
            assert await read_exactly(a, 24) == b"still open the other way"

    trio.run(main)


def test_send_after_send_eof_is_a_closed_resource() -> None:
    async def main() -> None:
        async with tcp_pair() as (a, _b):
            await a.send_eof()
            with pytest.raises(trio.ClosedResourceError):
                await a.send_all(b"x")

    trio.run(main)


def test_a_peer_reset_is_a_broken_resource_both_ways() -> None:
    async def main() -> None:
        stream, peer = unix_pair()
        async with tcp_pair() as (tcp_stream, other):
            reset_by_peer(other.socket)
            await trio.sleep(0.05)
            with pytest.raises(trio.BrokenResourceError) as caught:
                await tcp_stream.receive_some(10)
            assert isinstance(caught.value.__cause__, ConnectionResetError)
            with pytest.raises(trio.BrokenResourceError):
                for _ in range(100):
                    await tcp_stream.send_all(b"x" * 65536)
        peer.close()
        with pytest.raises(trio.BrokenResourceError):
            for _ in range(100):
                await stream.send_all(b"y" * 65536)
        await stream.aclose()

    trio.run(main)


def test_writing_to_a_closed_peer_is_eventually_a_broken_resource() -> None:
    async def main() -> None:
        async with tcp_pair() as (a, b):
            await b.aclose()
            with pytest.raises(trio.BrokenResourceError) as caught:
                for _ in range(1000):
                    await a.send_all(b"z" * 65536)
                    await trio.sleep(0.001)
            assert isinstance(caught.value.__cause__, OSError)

    trio.run(main)


def test_a_reset_while_waiting_to_write_is_a_broken_resource() -> None:
    """The writer is blocked on a full buffer when the peer resets."""

    async def main() -> None:
        stream, peer = unix_pair()
        async with trio.open_nursery() as nursery:
            caught: list[BaseException] = []

            async def write_forever() -> None:
                try:
                    while True:
                        await stream.send_all(b"w" * LARGE)
                except trio.BrokenResourceError as exc:
                    caught.append(exc)

            nursery.start_soon(write_forever)
            await trio.testing.wait_all_tasks_blocked()
            peer.close()
        assert len(caught) == 1
        await stream.aclose()

    trio.run(main)


def test_use_after_aclose_is_a_closed_resource_and_aclose_twice_is_fine() -> None:
    async def main() -> None:
        async with tcp_pair() as (a, _b):
            await a.aclose()
            assert a.socket.fileno() == -1
            with pytest.raises(trio.ClosedResourceError):
                await a.receive_some(10)
            with pytest.raises(trio.ClosedResourceError):
                await a.send_all(b"x")
            await a.aclose()

    trio.run(main)


def test_a_close_by_another_task_wakes_a_waiting_reader_as_closed() -> None:
    async def main() -> None:
        stream, peer = unix_pair()
        caught: list[BaseException] = []

        async def read() -> None:
            try:
                await stream.receive_some(10)
            except trio.ClosedResourceError as exc:
                caught.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()
            await stream.aclose()
        assert len(caught) == 1
        peer.close()

    trio.run(main)


def test_the_descriptor_number_of_a_closed_stream_is_never_used_again() -> None:
    """A new socket may get the old number: the closed stream must not read or write it."""

    async def main() -> None:
        stream, peer = unix_pair()
        other, other_peer = socket.socketpair()
        old_fd = stream.socket.fileno()
        await stream.aclose()
        peer.close()
        os.dup2(other.fileno(), old_fd)  # the old number now names another connection
        try:
            other_peer.send(b"not yours")
            with pytest.raises(trio.ClosedResourceError):
                await stream.receive_some(100)
            with pytest.raises(trio.ClosedResourceError):
                await stream.send_all(b"nor this")
            other.setblocking(False)
            assert other.recv(100) == b"not yours"
            other_peer.setblocking(False)
            with pytest.raises(BlockingIOError):
                other_peer.recv(100)
        finally:
            os.close(old_fd)
            other.close()
            other_peer.close()

    trio.run(main)


def test_receive_some_of_nothing_is_a_value_error() -> None:
    async def main() -> None:
        async with tcp_pair() as (a, _b):
            with pytest.raises(ValueError):
                await a.receive_some(0)
            with pytest.raises(ValueError):
                await a.receive_some(-1)

    trio.run(main)


# ------------------------------------------------------------------ cancellation


def test_a_waiting_receive_is_cancelled_promptly() -> None:
    async def main() -> None:
        async with tcp_pair() as (a, b):
            start = trio.current_time()
            with trio.move_on_after(0.05) as scope:
                await a.receive_some(10)
            assert scope.cancelled_caught
            assert trio.current_time() - start < 1.0

            reached_after = False

            async def read() -> None:
                nonlocal reached_after
                await b.receive_some(10)
                reached_after = True

            start = trio.current_time()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                await trio.testing.wait_all_tasks_blocked()
                nursery.cancel_scope.cancel()
            assert nursery.cancel_scope.cancelled_caught and not reached_after
            assert trio.current_time() - start < 1.0
            # the stream is still usable after a cancelled wait
            await a.send_all(b"ok")
            assert await read_exactly(b, 2) == b"ok"

    trio.run(main)


def test_a_waiting_send_is_cancelled_promptly() -> None:
    async def main() -> None:
        async with tcp_pair() as (a, _b):
            with trio.move_on_after(0.1) as scope:
                await a.send_all(b"s" * LARGE)  # nobody reads: the buffers fill up
            assert scope.cancelled_caught

    trio.run(main)


def test_calls_that_need_not_wait_still_raise_cancelled_in_a_cancelled_scope() -> None:
    async def main() -> None:
        stream, peer = unix_pair()
        peer.send(b"ready")
        await trio.sleep(0.01)
        with trio.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(trio.Cancelled):
                await stream.receive_some(10)
            with pytest.raises(trio.Cancelled):
                await stream.send_all(b"not sent")
        # nothing was consumed nor sent by the cancelled calls
        assert await stream.receive_some(10) == b"ready"
        assert pending_bytes(peer) == b""
        await stream.aclose()
        peer.close()

    trio.run(main)


def test_bytes_that_arrive_as_the_deadline_passes_are_not_lost() -> None:
    """A read that has taken bytes from the kernel returns them, cancelled or not.

    The reader waits; in one step (without letting trio run) a peer sends and the reader's
    deadline passes, so trio wakes the reader for the bytes and marks its scope cancelled at
    the same turn. Raising Cancelled after the read would drop the bytes on the floor.
    """

    async def main() -> None:
        stream, peer = unix_pair()
        got: list[bytes] = []

        async def read() -> None:
            with trio.move_on_after(0.05):
                got.append(await stream.receive_some(100))

        async def send_then_stall() -> None:
            await trio.testing.wait_all_tasks_blocked()
            peer.send(b"precious")
            time.sleep(0.1)  # past the reader's deadline, with trio unable to run

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            nursery.start_soon(send_then_stall)
        if not got:  # cancelled before it read: the bytes must still be in the socket
            with trio.fail_after(1):
                got.append(await stream.receive_some(100))
        assert got == [b"precious"]
        await stream.aclose()
        peer.close()

    trio.run(main)


# ------------------------------------------------------------------ fairness


Loop = Callable[[trio.abc.Stream, socket.socket], Awaitable[None]]


def _turns_of_another_task(stream: trio.abc.Stream, peer: socket.socket, loop: Loop) -> int:
    """How often a task doing `trio.sleep(0)` in a loop ran while `loop` ran (alone)."""

    async def main() -> int:
        turns = 0
        finished = False
        running = trio.Event()

        async def other() -> None:
            nonlocal turns
            running.set()
            while not finished:
                turns += 1
                await trio.sleep(0)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(other)
            await running.wait()
            before = turns
            await loop(stream, peer)
            during = turns - before
            finished = True
        await stream.aclose()
        peer.close()
        return during

    return trio.run(main)


CALLS = 20 * YIELD_EVERY
#: At least one turn per YIELD_EVERY calls, but not one per call (no trip when none is needed).
FAIR = range(CALLS // YIELD_EVERY - 1, CALLS // 2 + 1)


async def _read_all_the_time(stream: trio.abc.Stream, peer: socket.socket) -> None:
    for _ in range(CALLS):
        assert await stream.receive_some(1) == b"r"


async def _write_all_the_time(stream: trio.abc.Stream, peer: socket.socket) -> None:
    for _ in range(CALLS):
        await stream.send_all(b"w")
        assert pending_bytes(peer) == b"w"  # emptied at once, without a checkpoint


def test_a_reader_whose_socket_always_has_data_lets_other_tasks_run() -> None:
    stream, peer = unix_pair()
    peer.send(b"r" * CALLS)
    assert _turns_of_another_task(stream, peer, _read_all_the_time) in FAIR


def test_a_writer_whose_socket_always_has_room_lets_other_tasks_run() -> None:
    stream, peer = unix_pair()
    assert _turns_of_another_task(stream, peer, _write_all_the_time) in FAIR


@pytest.mark.parametrize("loop", [_read_all_the_time, _write_all_the_time])
def test_the_fairness_bound_fails_for_a_stream_that_yields_every_call(loop: Loop) -> None:
    """The bound above can fail: trio's own stream takes a trip on every call."""
    mine, other_end = socket.socketpair()
    other_end.setblocking(False)
    other_end.send(b"r" * CALLS)
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(mine))
    assert _turns_of_another_task(stream, other_end, loop) not in FAIR


# ------------------------------------------------------------------ channels


def test_send_soon_and_receive_soon_keep_order_and_end_with_the_channel() -> None:
    async def main() -> None:
        send, receive = trio.open_memory_channel[int](4)
        got: list[int] = []

        async def produce() -> None:
            with send:
                for i in range(100):
                    await send_soon(send, i)

        async def consume() -> None:
            with receive:
                while True:
                    try:
                        got.append(await receive_soon(receive))
                    except trio.EndOfChannel:
                        return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            nursery.start_soon(produce)
        assert got == list(range(100))

    trio.run(main)


def test_receive_soon_waits_for_a_value_and_raises_end_of_channel_after_close() -> None:
    async def main() -> None:
        send, receive = trio.open_memory_channel[str](1)
        got: list[str] = []

        async def consume() -> None:
            got.append(await receive_soon(receive))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            await trio.testing.wait_all_tasks_blocked()
            assert got == []
            await send_soon(send, "late")
        assert got == ["late"]
        await send_soon(send, "queued")
        send.close()
        assert await receive_soon(receive) == "queued"
        with pytest.raises(trio.EndOfChannel):
            await receive_soon(receive)

    trio.run(main)


def test_send_soon_waits_for_room_instead_of_dropping_or_raising() -> None:
    async def main() -> None:
        send, receive = trio.open_memory_channel[int](1)
        await send_soon(send, 1)
        sent = trio.Event()

        async def second() -> None:
            await send_soon(send, 2)
            sent.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(second)
            await trio.testing.wait_all_tasks_blocked()
            assert not sent.is_set()
            assert receive.statistics().current_buffer_used == 1
            assert await receive_soon(receive) == 1
        assert sent.is_set()
        assert await receive_soon(receive) == 2

    trio.run(main)


def test_send_soon_to_a_closed_receiver_is_a_broken_resource() -> None:
    async def main() -> None:
        send, receive = trio.open_memory_channel[int](4)
        receive.close()
        with pytest.raises(trio.BrokenResourceError):
            await send_soon(send, 1)

    trio.run(main)


def test_channel_calls_in_a_cancelled_scope_raise_cancelled_and_move_nothing() -> None:
    """As a channel's own send and receive: cancelled means not sent, not taken."""

    async def main() -> None:
        send, receive = trio.open_memory_channel[int](4)
        await send_soon(send, 1)
        with trio.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(trio.Cancelled):
                await send_soon(send, 2)
            with pytest.raises(trio.Cancelled):
                await receive_soon(receive)
        assert receive.receive_nowait() == 1  # not taken by the cancelled receive
        with pytest.raises(trio.WouldBlock):
            receive.receive_nowait()  # and 2 was not sent by the cancelled send

    trio.run(main)


def test_waiting_channel_calls_are_cancelled() -> None:
    async def main() -> None:
        send, receive = trio.open_memory_channel[int](1)
        with trio.move_on_after(0.05) as scope:
            await receive_soon(receive)
        assert scope.cancelled_caught
        await send_soon(send, 1)
        with trio.move_on_after(0.05) as scope:
            await send_soon(send, 2)
        assert scope.cancelled_caught
        assert receive.receive_nowait() == 1
        with pytest.raises(trio.WouldBlock):
            receive.receive_nowait()

    trio.run(main)


# ------------------------------------------------------------------ wrapping


def test_direct_stream_wraps_only_socket_streams() -> None:
    async def main() -> None:
        memory = trio.testing.MemorySendStream()
        assert direct_stream(memory) is memory
        left, _right = trio.testing.memory_stream_pair()
        assert direct_stream(left) is left
        sock, peer = trio.socket.socketpair()
        plain = trio.SocketStream(sock)
        wrapped = direct_stream(plain)
        assert isinstance(wrapped, DirectSocketStream)
        assert wrapped.socket is plain.socket
        await wrapped.aclose()
        assert plain.socket.fileno() == -1  # closing the wrapper closes the socket
        peer.close()

    trio.run(main)


def test_plain_socket_sees_through_a_direct_tcp_stream_only() -> None:
    async def main() -> None:
        async with tcp_pair() as (a, _b):
            assert splice.plain_socket(a) is a.socket
        stream, peer = unix_pair()
        assert splice.plain_socket(stream) is None  # not TCP
        ssl_like = trio.testing.memory_stream_pair()[0]
        assert splice.plain_socket(ssl_like) is None
        await stream.aclose()
        peer.close()

    trio.run(main)


def test_setsockopt_reaches_the_socket() -> None:
    async def main() -> None:
        async with tcp_pair() as (a, _b):
            a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 4096)
            assert a.socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT) == 4096
            a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)

    trio.run(main)


# ------------------------------------------------------------------ one call at a time


def test_a_second_reader_is_refused_even_when_bytes_are_waiting() -> None:
    """As trio.SocketStream: the bytes a waiting reader was woken for stay its own."""

    async def main() -> None:
        stream, peer = unix_pair()
        got: list[bytes] = []

        async def read() -> None:
            got.append(await stream.receive_some(100))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()
            peer.send(b"for the first reader")
            with pytest.raises(trio.BusyResourceError):
                await stream.receive_some(100)
        assert got == [b"for the first reader"]
        await stream.aclose()
        peer.close()

    trio.run(main)


def test_a_second_writer_is_refused_instead_of_interleaving_its_bytes() -> None:
    async def main() -> None:
        stream, peer = unix_pair()
        payload = b"a" * LARGE

        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.send_all, payload)
            await trio.testing.wait_all_tasks_blocked()  # the first writer waits for room
            received = bytearray(pending_bytes(peer))  # room again, the writer not yet told
            with pytest.raises(trio.BusyResourceError):
                await stream.send_all(b"B")
            with pytest.raises(trio.BusyResourceError):
                await stream.send_eof()
            while len(received) < LARGE:
                with trio.fail_after(5):
                    await trio.lowlevel.wait_readable(peer)
                received += pending_bytes(peer)
        assert received == payload  # no "B" in the middle
        await stream.send_all(b"then")  # the stream is free again once the first is done
        await stream.send_eof()
        with trio.fail_after(5):
            await trio.lowlevel.wait_readable(peer)
        assert pending_bytes(peer) == b"then"
        await stream.aclose()
        peer.close()

    trio.run(main)


# ------------------------------------------------------------------ TLS on top


def test_tls_over_direct_streams_moves_eight_megabytes_both_ways(tmp_path: Path) -> None:
    """How the tunnel talks to a TLS broker: trio's SSLStream over a direct stream."""
    pki = Pki(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(pki.server_pem)
    client_context = ssl.create_default_context(cafile=str(pki.ca_pem))
    up, down = os.urandom(LARGE), os.urandom(LARGE)

    async def main() -> None:
        got: dict[str, bytes] = {}
        async with tcp_pair() as (a, b):
            client = trio.SSLStream(a, client_context, server_hostname="127.0.0.1")
            server = trio.SSLStream(b, server_context, server_side=True)

            async def receive(name: str, stream: trio.SSLStream[DirectSocketStream]) -> None:
                got[name] = await read_exactly(stream, LARGE)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.send_all, up)
                nursery.start_soon(server.send_all, down)
                nursery.start_soon(receive, "at server", server)
                nursery.start_soon(receive, "at client", client)
            assert got == {"at server": up, "at client": down}
            await client.aclose()  # close_notify goes through the direct stream
            assert await server.receive_some(10) == b""
            assert a.socket.fileno() == -1
            await server.aclose()

    trio.run(main)


def test_a_reset_under_tls_is_a_broken_resource() -> None:
    async def main() -> None:
        async with tcp_pair() as (a, b):
            client = trio.SSLStream(a, ssl.create_default_context(), server_hostname="x")
            reset_by_peer(b.socket)
            with pytest.raises(trio.BrokenResourceError):
                await client.do_handshake()

    trio.run(main)


# ------------------------------------------------------------------ writes without waiting


def test_send_now_writes_what_the_kernel_takes_and_unwritten_gives_the_rest() -> None:
    async def main() -> None:
        stream, peer = unix_pair()
        parts = [b"head", bytearray(b"-middle-"), memoryview(b"xtail")[1:]]
        assert stream.send_now(parts) == 16
        assert pending_bytes(peer) == b"head-middle-tail"
        big = [b"s" * LARGE, b"after"]
        written = stream.send_now(big)
        assert 0 < written < LARGE  # the kernel took a part only
        assert stream.send_now([b"more"]) == 0  # full: nothing, and no wait
        rest = unwritten(big, written)
        assert sum(len(p) for p in rest) == LARGE + 5 - written
        received = bytearray()
        async with trio.open_nursery() as nursery:

            async def send_rest() -> None:
                for part in rest:
                    await stream.send_all(part)

            nursery.start_soon(send_rest)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                stream.send_now([b"would split the bytes being sent"])
            while len(received) < LARGE + 5:
                with trio.fail_after(5):
                    await trio.lowlevel.wait_readable(peer)
                received += pending_bytes(peer)
        assert received == b"s" * LARGE + b"after"
        await stream.send_eof()
        with pytest.raises(trio.ClosedResourceError):
            stream.send_now([b"x"])
        await stream.aclose()
        with pytest.raises(trio.ClosedResourceError):
            stream.send_now([b"x"])
        peer.close()

    trio.run(main)


def test_send_now_to_a_closed_peer_is_a_broken_resource() -> None:
    async def main() -> None:
        stream, peer = unix_pair()
        peer.close()
        with pytest.raises(trio.BrokenResourceError):
            stream.send_now([b"x"])
        await stream.aclose()

    trio.run(main)


def test_unwritten_cuts_across_parts_without_copying() -> None:
    parts: list[bytes | bytearray | memoryview] = [b"abc", bytearray(b"defg"), b"hi"]
    assert unwritten(parts, 0) == parts
    assert [bytes(p) for p in unwritten(parts, 2)] == [b"c", b"defg", b"hi"]
    assert [bytes(p) for p in unwritten(parts, 3)] == [b"defg", b"hi"]
    cut = unwritten(parts, 5)
    assert [bytes(p) for p in cut] == [b"fg", b"hi"]
    assert isinstance(cut[0], memoryview) and cut[0].obj is parts[1]
    assert unwritten(parts, 9) == []


def test_acquire_soon_takes_a_free_lock_waits_for_a_held_one_and_honours_cancel() -> None:
    async def main() -> None:
        lock = trio.Lock()
        await acquire_soon(lock)
        assert lock.locked()
        got = trio.Event()

        async def second() -> None:
            await acquire_soon(lock)
            got.set()
            lock.release()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(second)
            await trio.testing.wait_all_tasks_blocked()
            assert not got.is_set()
            lock.release()
        assert got.is_set() and not lock.locked()
        with trio.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(trio.Cancelled):
                await acquire_soon(lock)
        assert not lock.locked()  # a cancelled call has taken nothing

    trio.run(main)
