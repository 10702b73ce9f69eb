"""One client connection through the tunnel: frame, decode, decide, forward, rewrite/mask, record.

A connection is a trio nursery with two pumps that live and die together:

* the request pump reads client frames, summarizes and decides each one, and either forwards
  the frame to the broker byte for byte or prepares a local refusal;
* the response pump takes pending entries in request order from a bounded channel and, for
  each, either writes the prepared refusal or reads the broker's answer, rewrites / masks /
  records it, and writes it to the client.

The channel is the per-connection FIFO that keeps responses in request order (local refusals
included) and the backpressure: a slow client stops the response pump, which stops reading the
broker; a full channel stops the request pump, which stops reading the client.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import trio

from streamctl.kafka import error_codes
from streamctl.kafka.apis import MESSAGE_CLASSES, ApiKey, api_name
from streamctl.kafka.errors import BrokerProtocolError, ClientProtocolError, KafkaProtocolError
from streamctl.kafka.fetch_stream import (
    FetchedPartition,
    Read,
    describe_records,
    walk_fetch_response,
)
from streamctl.kafka.headers import (
    RequestHeader,
    correlation_id_of_response,
    encode_request_header,
    parse_request_header,
    response_body_offset,
    response_header_version,
)
from streamctl.kafka.messages import Message, decode_response, encode_request, encode_response
from streamctl.kafka.operations import OperationKind
from streamctl.kafka.refusals import refusal_response
from streamctl.kafka.rewrite import (
    metadata_topic_ids,
    rewrite_describe_cluster,
    rewrite_find_coordinator,
    rewrite_metadata,
    rewrite_node_endpoints,
)
from streamctl.kafka.summary import RequestSummary, decode_request_frame, summarize_message
from streamctl.kafka.versions import (
    answer_too_new_api_versions,
    clamp_api_versions,
    is_supported,
)
from streamctl.policy.decision import Verdict, decide
from streamctl.policy.grant import Grant
from streamctl.tunnel.brokers import BrokerMap
from streamctl.tunnel.direct import (
    Chunk,
    DirectSocketStream,
    acquire_soon,
    receive_soon,
    send_soon,
    unwritten,
)
from streamctl.tunnel.frames import (
    SPLIT_WRITE_ABOVE,
    FrameReader,
    UnfinishedFrame,
    frame_size,
    write_frame,
)
from streamctl.tunnel.hooks import MASKING_FAILED_ERROR, RecordMasker, SessionObserver
from streamctl.tunnel.sasl import SaslMechanism
from streamctl.tunnel.splice import MAX_PREFIX
from streamctl.tunnel.stats import TunnelStats
from streamctl.tunnel.upstream import TUNNEL_CLIENT_ID, Upstream, sasl_exchange_via

log = logging.getLogger("streamctl.tunnel")
#: How long the frames a client sent before it closed may take to reach the broker.
WRITE_OUT_SECONDS = 10.0

@dataclass
class TunnelContext:
    """What every connection of one tunnel shares: the grant, the cluster map and the hooks."""

    grant: Grant
    brokers: BrokerMap
    versions: Mapping[int, tuple[int, int]]
    stats: TunnelStats
    masker: RecordMasker | None = None
    observer: SessionObserver | None = None
    max_frame_size: int = 100 * 1024 * 1024
    max_in_flight: int = 64
    clock: Callable[[], float] = time.time
    #: Set when the tunnel is shutting down (expiry, revocation): every request is refused.
    closing_reason: str | None = None
    #: Builds a fresh SASL mechanism for KIP-368 re-authentication, None without SASL.
    reauth_mechanism: Callable[[], SaslMechanism] | None = None


@dataclass(slots=True)
class _Forwarded:
    """A request sent to the broker; its answer comes next on the broker stream."""

    summary: RequestSummary
    request: Message | None = None  # kept for Produce when an observer wants the records


@dataclass(slots=True)
class _Local:
    """A response prepared by the tunnel itself (refusal, KIP-511 answer)."""

    payload: bytes


@dataclass(slots=True)
class _Internal:
    """The tunnel's own request (SASL re-authentication); the answer goes back to its task."""

    api_key: int
    api_version: int
    correlation_id: int
    reply: trio.MemorySendChannel[bytes]


_Pending = _Forwarded | _Local | _Internal


class ConnectionClosed(Exception):
    """A pump ended the connection; the message is the reason (for the log and the transcript)."""

    def __init__(self, reason: str, *, warn: bool = False) -> None:
        super().__init__(reason)
        self.warn = warn


@dataclass
class ClientConnection:
    """The pipeline of one client connection and its broker connection."""

    ctx: TunnelContext
    conn_id: str
    client: trio.abc.Stream
    upstream: Upstream
    peer: str = "?"
    reason: str = "closed"
    _send_lock: trio.Lock = field(default_factory=trio.Lock)
    #: Frames on their way to the broker: the request pump reads the next request while the
    #: previous one is still being written (a small buffer, so memory stays bounded). Each
    #: item is what is left to write of one frame (its size, then its payload).
    _to_broker: trio.MemorySendChannel[list[Chunk]] | None = None
    #: Frames handed to the writer task and not yet written whole.
    _writing: int = 0
    #: Set by the writer task once the queue to the broker is closed and written out.
    _written_out: trio.Event = field(default_factory=trio.Event)
    _own_correlation: int = 0x7F000000

    async def run(self) -> str:
        """Pump both directions until either side ends; return why the connection closed."""
        send, receive = trio.open_memory_channel[_Pending](self.ctx.max_in_flight)
        to_broker, outgoing = trio.open_memory_channel[list[Chunk]](2)
        self._to_broker = to_broker
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._guard, self._pump_to_broker, outgoing, nursery.cancel_scope)
            nursery.start_soon(self._guard, self._pump_requests, send, nursery.cancel_scope)
            nursery.start_soon(self._guard, self._pump_responses, receive, nursery.cancel_scope)
            if self.upstream.session_lifetime and self.ctx.reauth_mechanism is not None:
                nursery.start_soon(self._guard, self._reauthenticate, send, nursery.cancel_scope)
        return self.reason

    async def _guard(
        self, pump: Callable[[Any], Awaitable[None]], channel: Any, scope: trio.CancelScope
    ) -> None:
        """Run a pump; whatever ends it ends the connection, with one clear log line."""
        try:
            await pump(channel)
        except ConnectionClosed as exc:
            self._close(str(exc), warn=exc.warn)
        except ClientProtocolError as exc:
            self._close(str(exc), warn=True)
        except BrokerProtocolError as exc:
            self._close(f"broker broke the protocol: {exc}", warn=True)
        except KafkaProtocolError as exc:
            self._close(str(exc), warn=True)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._close(f"connection lost: {exc.__cause__ or exc or 'reset'}")
        finally:
            scope.cancel()

    def _close(self, reason: str, *, warn: bool = False) -> None:
        if self.reason != "closed":
            return  # the first pump to fail names the reason
        self.reason = reason
        level = logging.WARNING if warn else logging.DEBUG
        log.log(level, "conn %s (%s): %s", self.conn_id, self.peer, reason)

    # ------------------------------------------------------------------ client -> broker

    async def _pump_requests(self, pending: trio.MemorySendChannel[_Pending]) -> None:
        frames = FrameReader(self.client, self.ctx.max_frame_size, peer="client")
        with pending:  # closed without a checkpoint: the reason is logged first
            while True:
                try:
                    frame = await frames.next_payload()
                except UnfinishedFrame as exc:
                    raise ConnectionClosed(
                        f"client disconnected in the middle of a request ({exc.received} bytes "
                        "of an unfinished frame)",
                        warn=True,
                    ) from None
                if frame is None:
                    await self._write_out("client closed the connection")
                    raise ConnectionClosed("client closed the connection")
                self.ctx.stats.bytes_from_clients += 4 + len(frame)
                await self._request(frame, pending)

    async def _request(
        self, frame: bytes | bytearray, pending: trio.MemorySendChannel[_Pending]
    ) -> None:
        header = parse_request_header(frame)
        too_new = answer_too_new_api_versions(header)
        if too_new is not None:
            await send_soon(pending, _Local(too_new))
            return
        if not is_supported(header.api_key, header.api_version, self.ctx.versions):
            await self._refuse_unsupported(header, frame, pending)
            return
        # Produce records are only forwarded (or digested from a copy): no need to copy them.
        _header, message = decode_request_frame(frame, views=header.api_key == ApiKey.PRODUCE)
        summary = summarize_message(header, message)
        verdict = self._decide(summary)
        if self.ctx.observer is not None:
            self.ctx.observer.on_request(self.conn_id, summary, verdict)
        if not verdict.allowed:
            self.ctx.stats.count_refused(verdict.error_code)
            log.info(
                "conn %s: refused %s (%s): %s",
                self.conn_id, summary.name, error_codes.NAMES.get(verdict.error_code, "?"),
                verdict.reason,
            )
            payload = refusal_response(frame, verdict.error_code, verdict.reason)
            if payload is not None:
                await send_soon(pending, _Local(payload))
            return
        self.ctx.stats.requests_allowed += 1
        if header.api_key == ApiKey.METADATA:
            frame = self._metadata_request(header, message, frame)
        keep = (
            message
            if header.api_key == ApiKey.PRODUCE and self.ctx.observer is not None
            else None
        )
        await acquire_soon(self._send_lock)
        try:
            if summary.expects_response:
                await send_soon(pending, _Forwarded(summary, keep))
            await self._send_to_broker(frame)
        finally:
            self._send_lock.release()

    async def _send_to_broker(self, frame: bytes | bytearray) -> None:
        """Send a frame to the broker, in the order its pending entry was queued.

        When nothing is queued before it, the socket is offered the frame at once and the
        writer task gets only what the kernel did not take (usually nothing: one wake-up
        fewer per request); otherwise, or over TLS, the writer task writes it all.
        """
        assert self._to_broker is not None
        parts: list[Chunk] = [frame_size(frame), frame]
        stream = self.upstream.stream
        if not self._writing and isinstance(stream, DirectSocketStream):
            parts = unwritten(parts, stream.send_now(parts))
            if not parts:
                return
        self._writing += 1
        await send_soon(self._to_broker, parts)

    async def _write_out(self, reason: str) -> None:
        """Let the writer task finish the frames the client sent before it closed.

        An acks=0 Produce gets no answer, so a client may close right after sending it,
        while the frame still waits for the writer task (over TLS, or behind a large
        frame); ending the connection at once would drop it without a word.
        """
        if not self._writing:
            return
        self._close(reason)  # named first: the wait below may end in a cancellation
        assert self._to_broker is not None
        self._to_broker.close()
        with trio.move_on_after(WRITE_OUT_SECONDS):
            await self._written_out.wait()

    async def _pump_to_broker(self, outgoing: trio.MemoryReceiveChannel[list[Chunk]]) -> None:
        with outgoing:
            while True:
                try:
                    parts = await receive_soon(outgoing)
                except trio.EndOfChannel:
                    self._written_out.set()
                    return
                if sum(len(p) for p in parts) <= SPLIT_WRITE_ABOVE:
                    parts = [b"".join(parts)]  # one write (one TLS record) for a small frame
                for part in parts:
                    await self.upstream.stream.send_all(part)
                self._writing -= 1

    def _decide(self, summary: RequestSummary) -> Verdict:
        closing = self.ctx.closing_reason
        if closing is not None and summary.api_key != ApiKey.API_VERSIONS:
            return Verdict.refuse(_refusal_code(summary), closing)
        return decide(summary, self.ctx.grant, self.ctx.clock(), self.ctx.brokers.topic_name_of)

    async def _refuse_unsupported(
        self,
        header: RequestHeader,
        frame: bytes | bytearray,
        pending: trio.MemorySendChannel[_Pending],
    ) -> None:
        """A request at a version we did not offer: UNSUPPORTED_VERSION if we can parse it."""
        what = f"{api_name(header.api_key)} v{header.api_version}"
        if header.api_key not in MESSAGE_CLASSES:
            raise ClientProtocolError(
                f"client sent {what}, which the tunnel does not offer (refused: it cannot be "
                "checked against the grant)"
            )
        try:
            payload = refusal_response(
                frame, error_codes.UNSUPPORTED_VERSION, f"the tunnel does not offer {what}"
            )
        except KafkaProtocolError:
            raise ClientProtocolError(
                f"client sent {what}, a version the tunnel does not offer and cannot parse"
            ) from None
        self.ctx.stats.count_refused(error_codes.UNSUPPORTED_VERSION)
        log.info("conn %s: refused %s: version not offered by the tunnel", self.conn_id, what)
        if payload is not None:
            await send_soon(pending, _Local(payload))

    def _metadata_request(
        self, header: RequestHeader, message: Message, frame: bytes | bytearray
    ) -> bytes | bytearray:
        """Stop the broker from auto-creating topics the grant may not create."""
        if not getattr(message, "allow_auto_topic_creation", False) or not message.topics:
            return frame
        grant = self.ctx.grant
        may_create = OperationKind.CREATE in grant.operations and all(
            grant.covers_topic(t.name) for t in message.topics if t.name
        )
        if may_create:
            return frame
        message.allow_auto_topic_creation = False
        return frame[: header.size] + encode_request(ApiKey.METADATA, header.api_version, message)

    # ------------------------------------------------------------------ broker -> client

    async def _pump_responses(self, pending: trio.MemoryReceiveChannel[_Pending]) -> None:
        frames = FrameReader(self.upstream.stream, self.ctx.max_frame_size, peer="broker")
        with contextlib.closing(frames):
            await self._pump_responses_from(frames, pending)

    async def _pump_responses_from(
        self, frames: FrameReader, pending: trio.MemoryReceiveChannel[_Pending]
    ) -> None:
        with pending:
            while True:
                try:
                    entry = await receive_soon(pending)
                except trio.EndOfChannel:
                    return
                if isinstance(entry, _Local):
                    await self._to_client(entry.payload)
                    continue
                if isinstance(entry, _Forwarded) and self._relays(entry.summary):
                    await self._relay(frames, entry.summary.correlation_id, entry.summary)
                    continue
                frame = await self._broker_frame(frames)
                expected = (
                    entry.correlation_id
                    if isinstance(entry, _Internal)
                    else entry.summary.correlation_id
                )
                got = correlation_id_of_response(frame)
                if got != expected:
                    raise BrokerProtocolError(
                        f"broker answered correlation id {got} where {expected} was due"
                    )
                if isinstance(entry, _Internal):
                    await entry.reply.send(frame)
                    continue
                await self._to_client(self._response(entry, frame))

    def _relays(self, summary: RequestSummary) -> bool:
        """Whether the answer needs no change, so it can be relayed as it arrives.

        Only Fetch below v16 (no NodeEndpoints) and only when no masker needs its records:
        then a 1 MB answer streams through instead of being held whole. An observer does not
        stop that: `_relay` reads just the answer's structure and batch headers on the way
        (kafka.fetch_stream) and reports what the client got once it has it.
        """
        return (
            summary.api_key == ApiKey.FETCH
            and summary.api_version < 16
            and self.ctx.masker is None
        )

    async def _relay(
        self, frames: FrameReader, correlation_id: int, summary: RequestSummary | None = None
    ) -> None:
        """Relay one answer as it arrives; with an observer, describe it (Fetch) on the way."""
        try:
            size = await frames.next_size()
            if size is None:
                raise ConnectionClosed("broker closed the connection", warn=True)
            if size < 4:
                raise BrokerProtocolError(f"broker sent a {size}-byte response frame")
            head = await frames.take(4)
            got = correlation_id_of_response(head)
            if got != correlation_id:
                raise BrokerProtocolError(
                    f"broker answered correlation id {got} where {correlation_id} was due"
                )
            start = size.to_bytes(4, "big") + head
            fetched: list[FetchedPartition] = []
            if summary is None or self.ctx.observer is None:
                await frames.relay(size - 4, self.client, prefix=start)
            else:
                fetched = await self._relay_described(frames, summary, size - 4, start)
        except UnfinishedFrame as exc:
            raise ConnectionClosed(f"broker closed the connection mid-response ({exc})",
                                   warn=True) from None
        self.ctx.stats.bytes_to_clients += 4 + size
        if summary is not None and self.ctx.observer is not None:
            for part in fetched:
                name = self._topic_name(part.topic, part.topic_id)
                self.ctx.observer.on_fetched(self.conn_id, name or str(part.topic_id), part, {})

    async def _relay_described(
        self, frames: FrameReader, summary: RequestSummary, size: int, start: bytes
    ) -> list[FetchedPartition]:
        """Relay a Fetch answer while the walker reads only its structure and batch headers.

        The parts the walker reads go out with the next spliced batch body (in the same
        segments), or on their own once they pass MAX_PREFIX bytes (an answer of small
        batches is all read), so no more than that is ever held. An answer whose structure
        is broken ends the connection (BrokerProtocolError), as a held answer the codec
        cannot read would.
        """
        walk = walk_fetch_response(summary.api_version, size)
        out: list[bytes] = [start]
        held = len(start)
        try:
            step = next(walk)
            while True:
                if isinstance(step, Read):
                    data = await frames.take(step.size)
                    out.append(data)
                    held += len(data)
                    if held > MAX_PREFIX:
                        await self.client.send_all(b"".join(out))
                        out.clear()
                        held = 0
                    step = walk.send(data)
                else:
                    await frames.relay(step.size, self.client, prefix=b"".join(out))
                    out.clear()
                    held = 0
                    step = walk.send(None)
        except StopIteration as done:
            if out:
                await self.client.send_all(b"".join(out))
            return cast(list[FetchedPartition], done.value)

    async def _to_client(self, payload: bytes) -> None:
        self.ctx.stats.bytes_to_clients += await write_frame(self.client, payload)

    async def _broker_frame(self, frames: FrameReader) -> bytes:
        try:
            frame = await frames.next_payload()
        except UnfinishedFrame as exc:
            raise ConnectionClosed(f"broker closed the connection mid-response ({exc})",
                                   warn=True) from None
        if frame is None:
            raise ConnectionClosed("broker closed the connection", warn=True)
        # answers are rewritten, masked and recorded as bytes (a large one was read in place)
        return frame if isinstance(frame, bytes) else bytes(frame)

    def _response(self, entry: _Forwarded, frame: bytes) -> bytes:
        summary = entry.summary
        key, version = summary.api_key, summary.api_version
        address_of = self.ctx.brokers.address_of
        out: bytes | None = None
        if key == ApiKey.API_VERSIONS:
            out = clamp_api_versions(frame, version, self.ctx.versions)
        elif key == ApiKey.METADATA:
            self.ctx.brokers.learn_topic_ids(metadata_topic_ids(frame, version))
            out = rewrite_metadata(
                frame, version, address_of, self.ctx.grant.covers_topic, summary.all_topics
            )
        elif key == ApiKey.FIND_COORDINATOR:
            out = rewrite_find_coordinator(frame, version, address_of)
        elif key == ApiKey.DESCRIBE_CLUSTER:
            out = rewrite_describe_cluster(frame, version, address_of)
        elif key == ApiKey.FETCH:
            out = self._fetch_response(summary, frame)
        elif key == ApiKey.PRODUCE:
            out = self._produce_response(entry, frame)
        return frame if out is None else out

    def _topic_name(self, name: str | None, topic_id: Any) -> str | None:
        if name:
            return name
        return self.ctx.brokers.topic_name_of(topic_id) if topic_id is not None else None

    def _fetch_response(self, summary: RequestSummary, frame: bytes) -> bytes | None:
        """Mask and record fetched partitions when hooks are set; else only NodeEndpoints.

        Which topics need masking is read from the response, never from the request: with
        fetch sessions (KIP-227) an incremental Fetch names no topics yet returns their data.
        """
        masker, observer = self.ctx.masker, self.ctx.observer
        if masker is None and observer is None:
            return rewrite_node_endpoints(ApiKey.FETCH, frame, summary.api_version,
                                          self.ctx.brokers.address_of)
        version = summary.api_version
        offset = response_body_offset(frame, response_header_version(ApiKey.FETCH, version))
        body = decode_response(ApiKey.FETCH, version, frame, offset)
        changed = False
        for topic in body.responses or ():
            name = self._topic_name(getattr(topic, "topic", None), getattr(topic, "topic_id", None))
            for part in topic.partitions or ():
                counts: Mapping[str, int] = {}
                if masker is not None and part.records:
                    counts, masked = self._mask_partition(masker, name, part)
                    changed = changed or masked
                if observer is not None:
                    observer.on_fetched(
                        self.conn_id, name or str(topic.topic_id),
                        describe_records(getattr(topic, "topic", None),
                                         getattr(topic, "topic_id", None), part.partition_index,
                                         part.error_code, bytes(part.records or b"")),
                        counts,
                    )
        for endpoint in getattr(body, "node_endpoints", None) or ():
            endpoint.host, endpoint.port = self.ctx.brokers.address_of(
                endpoint.node_id, endpoint.host, endpoint.port
            )
            changed = True
        if not changed:
            return None
        return frame[:offset] + encode_response(ApiKey.FETCH, version, body)

    def _mask_partition(
        self, masker: RecordMasker, name: str | None, part: Any
    ) -> tuple[Mapping[str, int], bool]:
        """Mask one partition's records in place; on any failure, an error and no records.

        Returns the mask counts and whether the partition changed.
        """
        try:
            if name is None:
                raise LookupError("the topic id is not known, so its masking rules are not")
            if not masker.needs_masking(name):
                return {}, False
            outcome = masker.mask(name, part.partition_index, bytes(part.records))
            part.records = bytes(outcome.records)
            self.ctx.stats.partitions_masked += 1
            return outcome.counts, True
        except Exception as exc:  # fail closed: never the unmasked bytes
            log.warning(
                "conn %s: masking failed for %s[%s], sending an error instead of records: %s",
                self.conn_id, name or "unknown topic", part.partition_index,
                type(exc).__name__ if not str(exc) else exc,
            )
            part.error_code = MASKING_FAILED_ERROR
            part.records = b""
            part.aborted_transactions = None
            self.ctx.stats.partitions_mask_failed += 1
            return {}, True

    def _produce_response(self, entry: _Forwarded, frame: bytes) -> bytes | None:
        version = entry.summary.api_version
        out = rewrite_node_endpoints(ApiKey.PRODUCE, frame, version, self.ctx.brokers.address_of)
        observer = self.ctx.observer
        if observer is None or entry.request is None:
            return out
        sent: dict[tuple[str, int], bytes] = {}
        for topic in entry.request.topic_data or ():
            name = self._topic_name(getattr(topic, "name", None), getattr(topic, "topic_id", None))
            for part in topic.partition_data or ():
                sent[(name or str(topic.topic_id), part.index)] = bytes(part.records or b"")
        offset = response_body_offset(frame, response_header_version(ApiKey.PRODUCE, version))
        body = decode_response(ApiKey.PRODUCE, version, frame, offset)
        for topic in body.responses or ():
            name = self._topic_name(getattr(topic, "name", None), getattr(topic, "topic_id", None))
            label = name or str(topic.topic_id)
            for part in topic.partition_responses or ():
                observer.on_produced(
                    self.conn_id, label, part.index, sent.get((label, part.index), b""),
                    part.base_offset, part.error_code,
                )
        return out

    # ------------------------------------------------------------------ KIP-368

    async def _reauthenticate(self, pending: trio.MemorySendChannel[_Pending]) -> None:
        """Re-authenticate on the same broker connection before the broker's session ends."""
        assert self.ctx.reauth_mechanism is not None
        lifetime = self.upstream.session_lifetime
        while lifetime:
            await trio.sleep(max(lifetime * 0.85, lifetime - 30.0, 0.5))
            mechanism = self.ctx.reauth_mechanism()
            async with self._send_lock:
                lifetime = await sasl_exchange_via(self._own_roundtrip(pending), mechanism)
            self.ctx.stats.reauthentications += 1
            log.info("conn %s: re-authenticated to the broker (%s)", self.conn_id, mechanism.name)

    def _own_roundtrip(
        self, pending: trio.MemorySendChannel[_Pending]
    ) -> Callable[[int, int, Message], Awaitable[Message]]:
        async def roundtrip(api_key: int, version: int, message: Message) -> Message:
            self._own_correlation += 1
            corr = self._own_correlation
            reply_send, reply_receive = trio.open_memory_channel[bytes](1)
            await pending.send(_Internal(api_key, version, corr, reply_send))
            header = encode_request_header(api_key, version, corr, TUNNEL_CLIENT_ID)
            await self._send_to_broker(header + encode_request(api_key, version, message))
            frame = await reply_receive.receive()
            offset = response_body_offset(frame, response_header_version(api_key, version))
            return decode_response(api_key, version, frame, offset)

        return roundtrip


def _refusal_code(summary: RequestSummary) -> int:
    if summary.topics or summary.topic_ids:
        return error_codes.TOPIC_AUTHORIZATION_FAILED
    if summary.groups:
        return error_codes.GROUP_AUTHORIZATION_FAILED
    return error_codes.CLUSTER_AUTHORIZATION_FAILED
