"""The tunnel engine: local listeners per broker, one pipeline per connection, grant lifetime.

`Tunnel.serve()` opens the bootstrap listener, hands its address to the caller, and then
serves until the grant expires (or `stop()` is called). Brokers revealed by Metadata,
FindCoordinator or DescribeCluster each get their own local listener on first sight, so a
client only ever sees local addresses. `run_tunnel_in_thread()` runs a tunnel in a
background thread for tests, the CLI and benchmarks.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import trio

from streamctl.kafka.apis import ApiKey
from streamctl.kafka.framing import DEFAULT_MAX_FRAME_SIZE
from streamctl.kafka.versions import SUPPORTED_VERSIONS
from streamctl.policy.grant import Grant
from streamctl.tunnel.brokers import BrokerMap
from streamctl.tunnel.connection import ClientConnection, TunnelContext
from streamctl.tunnel.direct import direct_stream
from streamctl.tunnel.hooks import RecordMasker, SessionObserver
from streamctl.tunnel.sasl import SaslMechanism, make_mechanism
from streamctl.tunnel.stats import TunnelStats
from streamctl.tunnel.upstream import (
    UpstreamError,
    UpstreamSecurity,
    open_any,
    open_upstream,
    parse_bootstrap,
)

log = logging.getLogger("streamctl.tunnel")

#: Called with ("info" | "warning" | "error", one human line) for things a user should see.
Notice = Callable[[str, str], None]

#: Versions the tunnel offers: the protocol core's table, minus what it cannot enforce here.
#: Metadata below v4 lets the broker auto-create any topic named (no allow flag to clear).
TUNNEL_VERSIONS: Mapping[int, tuple[int, int]] = {
    key: (max(low, 4), high) if key == ApiKey.METADATA else (low, high)
    for key, (low, high) in SUPPORTED_VERSIONS.items()
}


REMOTE_BIND_WARNING = (
    "the tunnel listens beyond this machine: anyone who can reach it acts with this grant"
)


def _relaying_versions(versions: Mapping[int, tuple[int, int]]) -> dict[int, tuple[int, int]]:
    """Without a masker, Fetch answers are relayed as they arrive: offer Fetch below v16 only.

    (An observer does not change that: a relayed answer is reported from a copy.)

    Fetch v16+ answers may end with KIP-951 NodeEndpoints (broker addresses), which can only
    be rewritten once the whole answer is in; clients without them learn a new leader from
    Metadata, as they did before KIP-951.
    """
    table = dict(versions)
    low, high = table[ApiKey.FETCH]
    table[ApiKey.FETCH] = (low, min(high, 15))
    return table


class TunnelError(Exception):
    """The tunnel cannot start (bad bind address, expired grant...); the message says why."""


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S UTC")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Tunnel:
    """A Kafka-protocol tunnel enforcing one grant between local clients and a cluster."""

    def __init__(
        self,
        grant: Grant,
        grant_token: str | None = None,
        *,
        listen_host: str = "127.0.0.1",
        bootstrap_port: int = 0,
        masker: RecordMasker | None = None,
        observer: SessionObserver | None = None,
        security: UpstreamSecurity | None = None,
        upstream_bootstrap: str | None = None,
        allow_remote_bind: bool = False,
        advertised_host: str | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_in_flight: int = 64,
        expiry_warning: float = 300.0,
        expiry_grace: float = 1.0,
        on_notice: Notice | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not _is_loopback(listen_host) and not allow_remote_bind:
            raise TunnelError(
                f"refusing to listen on {listen_host}: the tunnel is plaintext and serves the "
                "grant's rights to anyone who connects; bind to 127.0.0.1, or pass the explicit "
                "allow flag if you really mean it"
            )
        self.grant = grant
        self.grant_token = grant_token
        self.listen_host = listen_host
        self.advertised_host = advertised_host or listen_host
        self.bootstrap_port = bootstrap_port
        self.security = security or UpstreamSecurity.from_cluster(grant.cluster)
        self.upstream_addresses = parse_bootstrap(upstream_bootstrap or grant.cluster.bootstrap)
        if not self.upstream_addresses:
            raise TunnelError("the grant names no bootstrap broker")
        self.expiry_warning = expiry_warning
        self.expiry_grace = expiry_grace
        self.on_notice = on_notice
        self.clock = clock
        self.stats = TunnelStats()
        self.brokers = BrokerMap(self._open_node_listener)
        self.ctx = TunnelContext(
            grant=grant,
            brokers=self.brokers,
            versions=(
                TUNNEL_VERSIONS
                if masker is not None
                else _relaying_versions(TUNNEL_VERSIONS)
            ),
            stats=self.stats,
            masker=masker,
            observer=observer,
            max_frame_size=max_frame_size,
            max_in_flight=max_in_flight,
            clock=clock,
            reauth_mechanism=self._mechanism if self.security.uses_sasl else None,
        )
        #: Why the tunnel stopped (grant expired, stopped by the user...), once it has.
        self.stop_reason: str | None = None
        self.bootstrap: str | None = None
        self._nursery: trio.Nursery | None = None
        self._ids = itertools.count(1)
        self._listeners: list[socket.socket] = []

    def _notice(self, level: str, message: str) -> None:
        log.log(getattr(logging, level.upper(), logging.INFO), "%s", message)
        if self.on_notice is not None:
            self.on_notice(level, message)

    def _mechanism(self) -> SaslMechanism:
        return make_mechanism(
            self.security.sasl_mechanism or "",
            username=self.security.sasl_username,
            password=self.security.sasl_password,
            token=self.grant_token,
        )

    # ------------------------------------------------------------------ lifecycle

    async def serve(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until the grant expires or stop() is called; report the bootstrap address."""
        now = self.clock()
        if now >= self.grant.expires_at:
            raise TunnelError(
                f"grant {self.grant.grant_id} expired at {_when(self.grant.expires_at)}; "
                "run `streamctl connect` again for a new grant"
            )
        if not _is_loopback(self.listen_host):
            self._notice("warning", REMOTE_BIND_WARNING)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                sock, (host, port) = self._bind(self.bootstrap_port)
                nursery.start_soon(self._accept_loop, sock, None)
                nursery.start_soon(self._watch_lifetime)
                self.bootstrap = f"{_format_host(host)}:{port}"
                log.info(
                    "tunnel for grant %s listening on %s (cluster %s)",
                    self.grant.grant_id, self.bootstrap, self.grant.cluster.name,
                )
                task_status.started(self.bootstrap)
        finally:
            self._nursery = None
            for sock in self._listeners:
                sock.close()
            self._listeners.clear()
            _close_masker(self.ctx.masker)
        if self.stop_reason is None:
            self.stop_reason = "stopped"

    def stop(self, reason: str = "stopped") -> None:
        """End serving now (call from the tunnel's trio thread); connections are closed."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self.ctx.closing_reason = self.ctx.closing_reason or reason
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def revoke(self, reason: str) -> None:
        """The grant was revoked: refuse new requests with the reason, then stop (trio thread)."""
        if self._nursery is not None:
            self._nursery.start_soon(self.close_for, reason)

    async def close_for(self, reason: str) -> None:
        """Refuse new requests with `reason`, give clients a moment to read it, then stop."""
        self.ctx.closing_reason = reason
        self._notice("error", reason)
        await trio.sleep(self.expiry_grace)
        self.stop(reason)

    async def _watch_lifetime(self) -> None:
        """The grant's expiry as a deadline: warn some minutes before, close at expiry."""
        expires = self.grant.expires_at
        warn_at = expires - self.expiry_warning
        if self.clock() < warn_at:
            await _sleep_until(warn_at, self.clock)
            minutes = max(1, round((expires - self.clock()) / 60))
            self._notice(
                "warning",
                f"grant {self.grant.grant_id} expires in about {minutes} min (at "
                f"{_when(expires)}); run `streamctl connect` again to continue after that",
            )
        await _sleep_until(expires, self.clock)
        await self.close_for(
            f"grant {self.grant.grant_id} expired at {_when(expires)}: the tunnel refuses new "
            "requests and closes; run `streamctl connect` again for a new grant"
        )

    # ------------------------------------------------------------------ listeners

    def _bind(self, port: int) -> tuple[socket.socket, tuple[str, int]]:
        family = socket.AF_INET6 if ":" in self.listen_host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.listen_host, port))
            sock.listen(1024)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise TunnelError(f"cannot listen on {self.listen_host}:{port}: {exc}") from None
        self._listeners.append(sock)
        return sock, (self.advertised_host, int(sock.getsockname()[1]))

    def _open_node_listener(self, node_id: int) -> tuple[str, int]:
        """Give a broker node its own local listener, the first time a client may see it."""
        if self._nursery is None:
            raise TunnelError("the tunnel is not serving")
        sock, address = self._bind(0)
        self._nursery.start_soon(self._accept_loop, sock, node_id)
        log.info("broker node %s is reachable through %s:%s", node_id, *address)
        return address

    async def _accept_loop(self, sock: socket.socket, node_id: int | None) -> None:
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        assert self._nursery is not None
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:  # e.g. out of file descriptors: keep serving the others
                log.warning("cannot accept a connection: %s", exc)
                await trio.sleep(0.1)
                continue
            self._nursery.start_soon(self._serve_client, stream, node_id)

    async def _serve_client(self, client: trio.SocketStream, node_id: int | None) -> None:
        conn_id = f"c{next(self._ids)}"
        try:
            peer = "{}:{}".format(*client.socket.getpeername()[:2])
        except OSError:
            peer = "?"
        self.stats.connections_open += 1
        self.stats.connections_total += 1
        reason = "closed"
        try:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream = await self._open_upstream(node_id)
            try:
                connection = ClientConnection(self.ctx, conn_id, direct_stream(client), upstream,
                                              peer)
                reason = await connection.run()
            finally:
                await trio.aclose_forcefully(upstream.stream)
        except trio.Cancelled:
            reason = f"tunnel closed: {self.ctx.closing_reason or self.stop_reason or 'stopped'}"
            raise
        except UpstreamError as exc:
            reason = str(exc)
            self.stats.connection_errors += 1
            log.warning("conn %s (%s): %s", conn_id, peer, exc)
        except Exception as exc:  # one connection's bug must never take the tunnel down
            reason = f"internal error: {type(exc).__name__}: {exc}"
            self.stats.connection_errors += 1
            log.error("conn %s (%s): %s", conn_id, peer, reason, exc_info=log.isEnabledFor(10))
        finally:
            self.stats.connections_open -= 1
            observer = self.ctx.observer
            if observer is not None:  # before any await: it must run even when cancelled
                try:
                    observer.on_close(conn_id, reason)
                except Exception as exc:
                    log.error("conn %s: session observer failed on close: %s", conn_id, exc)
            await trio.aclose_forcefully(client)

    async def _open_upstream(self, node_id: int | None) -> Any:
        if node_id is None:
            upstream, _address = await open_any(
                self.upstream_addresses, self.security, self.grant_token
            )
            return upstream
        real = self.brokers.real_address(node_id)
        if real is None:
            raise UpstreamError(f"broker node {node_id} is not known to the tunnel")
        return await open_upstream(real[0], real[1], self.security, self.grant_token)


def _close_masker(masker: RecordMasker | None) -> None:
    """Stop what a masker runs beside the tunnel (GrantMasker's worker process), if anything."""
    close = getattr(masker, "close", None)
    if callable(close):
        try:
            close()
        except Exception as exc:  # stopping must not hide why the tunnel stopped
            log.warning("the masker did not stop cleanly: %s", type(exc).__name__)


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def _sleep_until(when: float, clock: Callable[[], float]) -> None:
    """Sleep until a wall-clock time, in slices, so a suspended laptop wakes up on time."""
    while (left := when - clock()) > 0:
        await trio.sleep(min(left, 30.0))


# ---------------------------------------------------------------------- thread helper


def _unwrap(exc: BaseException) -> BaseException:
    """The one real error inside trio's exception groups, so callers can catch TunnelError."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


class TunnelThread:
    """A tunnel running in its own thread with its own trio loop; start(), stop(), wait()."""

    def __init__(self, tunnel: Tunnel) -> None:
        self.tunnel = tunnel
        self._started: queue.Queue[str | BaseException] = queue.Queue()
        self._token: trio.lowlevel.TrioToken | None = None
        self._thread = threading.Thread(target=self._main, name="streamctl-tunnel", daemon=True)
        self.error: BaseException | None = None
        self.bootstrap: str | None = None

    def _main(self) -> None:
        async def runner() -> None:
            self._token = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                bootstrap = await nursery.start(self.tunnel.serve)
                self._started.put(bootstrap)

        try:
            trio.run(runner)
        except BaseException as exc:
            self.error = _unwrap(exc)
            self._started.put(self.error)

    def start(self, timeout: float = 30.0) -> str:
        """Start the thread; return the bootstrap address once the tunnel listens."""
        self._thread.start()
        result = self._started.get(timeout=timeout)
        if isinstance(result, BaseException):
            raise result
        self.bootstrap = result
        return result

    def stop(self, reason: str = "stopped", timeout: float = 10.0) -> None:
        """Stop the tunnel and wait for its thread to end."""
        if self._thread.is_alive() and self._token is not None:
            try:
                trio.from_thread.run_sync(self.tunnel.stop, reason, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        self._thread.join(timeout)

    def revoke(self, reason: str) -> None:
        """End the tunnel because the grant was revoked (from any thread, e.g. a status poll)."""
        if self._thread.is_alive() and self._token is not None:
            try:
                trio.from_thread.run_sync(self.tunnel.revoke, reason, trio_token=self._token)
            except trio.RunFinishedError:
                pass

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the tunnel ends by itself (expiry); True if it did within the timeout."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def __enter__(self) -> TunnelThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def run_tunnel_in_thread(
    grant: Grant, grant_token: str | None = None, **options: Any
) -> Iterator[str]:
    """Run a tunnel in a background thread for the duration of a `with` block; yield bootstrap."""
    with TunnelThread(Tunnel(grant, grant_token, **options)) as handle:
        assert handle.bootstrap is not None
        yield handle.bootstrap
