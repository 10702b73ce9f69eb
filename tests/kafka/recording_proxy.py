"""A small Kafka recording proxy for golden tests: real clients <-> proxy <-> real broker.

Plain threads and sockets. Every request and response frame is recorded as it crossed the
wire (the broker's original bytes, before any rewrite). To keep clients talking through the
proxy it uses streamctl's own protocol core the way the tunnel will: ApiVersions answers are
clamped to SUPPORTED_VERSIONS, and advertised broker addresses are rewritten to one local
listener per node id. A frame the core cannot parse is recorded as an error, not fatal.

With `refuse` set, it also plays the tunnel's refusal role: a request the callback picks is
answered locally with `refusal_response`, still in request order on its connection, so real
clients can show which error they report (issue 3, must-show 4).
"""

from __future__ import annotations

import socket
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from streamctl.kafka.apis import ApiKey
from streamctl.kafka.errors import KafkaProtocolError
from streamctl.kafka.framing import FrameBuffer, encode_frame
from streamctl.kafka.headers import correlation_id_of_response, parse_request_header
from streamctl.kafka.refusals import refusal_response
from streamctl.kafka.rewrite import carries_addresses, rewrite_addresses
from streamctl.kafka.summary import RequestSummary, summarize
from streamctl.kafka.versions import clamp_api_versions


@dataclass(frozen=True)
class Exchange:
    """One frame as seen on the wire; responses carry the key/version of their request."""

    label: str
    direction: str  # "request" or "response"
    api_key: int
    api_version: int
    frame: bytes


@dataclass
class Recording:
    """Everything a proxy saw, shared by all its connections."""

    exchanges: list[Exchange] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, exchange: Exchange) -> None:
        with self.lock:
            self.exchanges.append(exchange)

    def error(self, text: str) -> None:
        with self.lock:
            self.errors.append(text)


#: Picks the requests to refuse: (error code, message) to refuse, None to forward.
Refuser = Callable[[RequestSummary], "tuple[int, str | None] | None"]


class _InOrder:
    """Responses of one connection, released strictly in request order."""

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.lock = threading.Lock()
        self.slots: deque[list[object]] = deque()  # [correlation id, payload or None]

    def expect(self, correlation_id: int) -> None:
        with self.lock:
            self.slots.append([correlation_id, None])

    def deliver(self, correlation_id: int, payload: bytes) -> None:
        with self.lock:
            for slot in self.slots:
                if slot[0] == correlation_id and slot[1] is None:
                    slot[1] = payload
                    break
            else:
                self.client.sendall(encode_frame(payload))
                return
            while self.slots and self.slots[0][1] is not None:
                ready = self.slots.popleft()[1]
                assert isinstance(ready, bytes)
                self.client.sendall(encode_frame(ready))


class RecordingProxy:
    """Listens on loopback, one port for bootstrap and one per broker node it learns about."""

    def __init__(self, bootstrap: str) -> None:
        host, port = bootstrap.rsplit(":", 1)
        self.recording = Recording()
        self.label = "unlabelled"
        self.refuse: Refuser | None = None
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._sockets: list[socket.socket] = []
        self._node_ports: dict[int, int] = {}
        self._bootstrap_port = self._listen((host, int(port)))

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self._bootstrap_port}"

    def close(self) -> None:
        self._closing.set()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def __enter__(self) -> RecordingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ listeners

    def _listen(self, upstream: tuple[str, int]) -> int:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        with self._lock:
            self._sockets.append(server)
        threading.Thread(target=self._accept, args=(server, upstream), daemon=True).start()
        return int(server.getsockname()[1])

    def _address_of(self, node_id: int, host: str, port: int) -> tuple[str, int]:
        with self._lock:
            known = self._node_ports.get(node_id)
        if known is None:
            known = self._listen((host, port))
            with self._lock:
                known = self._node_ports.setdefault(node_id, known)
        return "127.0.0.1", known

    def _accept(self, server: socket.socket, upstream: tuple[str, int]) -> None:
        while not self._closing.is_set():
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                broker = socket.create_connection(upstream, timeout=10)
                broker.settimeout(None)
            except OSError as exc:
                self.recording.error(f"cannot reach broker {upstream}: {exc}")
                client.close()
                continue
            with self._lock:
                self._sockets.extend([client, broker])
            pending: dict[int, tuple[int, int]] = {}
            label = self.label
            order = _InOrder(client)
            threading.Thread(target=self._pump_requests,
                             args=(client, broker, pending, label, order), daemon=True).start()
            threading.Thread(target=self._pump_responses,
                             args=(broker, client, pending, label, order), daemon=True).start()

    # ------------------------------------------------------------------ pumps

    def _pump_requests(self, client: socket.socket, broker: socket.socket,
                       pending: dict[int, tuple[int, int]], label: str, order: _InOrder) -> None:
        frames = FrameBuffer(peer="client")
        try:
            while data := client.recv(65536):
                frames.feed(data)
                while (frame := frames.next_frame()) is not None:
                    try:
                        header = parse_request_header(frame)
                    except KafkaProtocolError as exc:
                        self.recording.error(f"{label}: request header: {exc}")
                        return
                    self.recording.add(Exchange(label, "request", header.api_key,
                                                header.api_version, frame))
                    try:
                        summary = summarize(frame)
                    except KafkaProtocolError as exc:
                        self.recording.error(f"{label}: request: {exc}")
                        summary = None
                    refusal = self.refuse(summary) if self.refuse and summary else None
                    if summary is not None and summary.expects_response:
                        order.expect(header.correlation_id)
                    if refusal is not None:
                        payload = refusal_response(frame, refusal[0], refusal[1])
                        if payload is not None:
                            order.deliver(header.correlation_id, payload)
                        continue
                    pending[header.correlation_id] = (header.api_key, header.api_version)
                    broker.sendall(encode_frame(frame))
        except KafkaProtocolError as exc:
            self.recording.error(f"{label}: request framing: {exc}")
        except OSError:
            pass
        finally:
            _close_quietly(broker)

    def _pump_responses(self, broker: socket.socket, client: socket.socket,
                        pending: dict[int, tuple[int, int]], label: str, order: _InOrder) -> None:
        frames = FrameBuffer(peer="broker")
        try:
            while data := broker.recv(65536):
                frames.feed(data)
                while (frame := frames.next_frame()) is not None:
                    correlation_id = correlation_id_of_response(frame)
                    order.deliver(correlation_id, self._on_response(frame, pending, label))
        except KafkaProtocolError as exc:
            self.recording.error(f"{label}: response framing: {exc}")
        except OSError:
            pass
        finally:
            _close_quietly(client)

    def _on_response(self, frame: bytes, pending: dict[int, tuple[int, int]], label: str) -> bytes:
        key, version = pending.pop(correlation_id_of_response(frame), (-1, -1))
        self.recording.add(Exchange(label, "response", key, version, frame))
        try:
            if key == ApiKey.API_VERSIONS:
                return clamp_api_versions(frame, version)
            if carries_addresses(key, version):
                return rewrite_addresses(key, version, frame, self._address_of) or frame
        except KafkaProtocolError as exc:
            self.recording.error(f"{label}: response {key} v{version}: {exc}")
        return frame


def _close_quietly(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
