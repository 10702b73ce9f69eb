"""Connections from the tunnel to real brokers: TCP, optional TLS, optional SASL.

`UpstreamSecurity` holds how to reach the cluster (from the grant's cluster settings, plus
local files such as a client certificate); `open_upstream` returns a ready stream with the
SASL exchange done and tells how long the broker's session lasts (KIP-368), so the
connection can re-authenticate before the broker closes it.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, cast

import trio

from streamctl.kafka import error_codes
from streamctl.kafka.apis import MESSAGE_CLASSES, ApiKey
from streamctl.kafka.errors import BrokerProtocolError
from streamctl.kafka.framing import FrameBuffer, encode_frame
from streamctl.kafka.headers import (
    correlation_id_of_response,
    encode_request_header,
    response_body_offset,
    response_header_version,
)
from streamctl.kafka.messages import decode_response, encode_request
from streamctl.policy.grant import ClusterSettings
from streamctl.tunnel.direct import direct_stream
from streamctl.tunnel.sasl import SaslError, SaslMechanism, make_mechanism

_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
#: Client id the tunnel uses on its own requests (SASL), so broker logs show who sent them.
TUNNEL_CLIENT_ID = "streamctl-tunnel"
#: Correlation ids of the tunnel's own requests live far from the ones clients use.
_OWN_CORRELATION_BASE = 0x7F000000


class UpstreamError(Exception):
    """The tunnel could not reach or authenticate to a broker; the message says why."""


@dataclass(frozen=True)
class UpstreamSecurity:
    """How the tunnel talks to brokers; secrets are never shown by repr."""

    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    tls_ca_file: str | None = None
    tls_ca_pem: str | None = field(default=None, repr=False)
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_key_password: str | None = field(default=None, repr=False)
    tls_check_hostname: bool = True
    tls_server_hostname: str | None = None
    connect_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.security_protocol.upper() not in _SECURITY_PROTOCOLS:
            raise ValueError(
                f"security protocol {self.security_protocol!r} is not one of "
                f"{', '.join(_SECURITY_PROTOCOLS)}"
            )
        if self.uses_sasl and not self.sasl_mechanism:
            raise ValueError(f"{self.security_protocol} needs a SASL mechanism")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol.upper() in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.upper() in ("SASL_PLAINTEXT", "SASL_SSL")

    @classmethod
    def from_cluster(cls, cluster: ClusterSettings, **overrides: Any) -> UpstreamSecurity:
        """Settings from the grant's cluster section, with local overrides (files, passwords)."""
        base = cls(
            security_protocol=cluster.security_protocol,
            sasl_mechanism=cluster.sasl_mechanism,
            tls_ca_pem=cluster.tls_ca,
            tls_server_hostname=cluster.tls_server_hostname,
        )
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(base, **given) if given else base

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context: the CA given (or the system's), client cert, hostname check."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.tls_ca_file or self.tls_ca_pem:
            ctx.load_verify_locations(cafile=self.tls_ca_file, cadata=self.tls_ca_pem)
        if self.tls_cert_file:
            ctx.load_cert_chain(self.tls_cert_file, self.tls_key_file, self.tls_key_password)
        ctx.check_hostname = self.tls_check_hostname
        return ctx


@dataclass
class Upstream:
    """A connected, authenticated broker stream and what the SASL exchange told us."""

    stream: trio.abc.Stream
    #: Broker session lifetime in seconds (KIP-368), or None when the broker sets none.
    session_lifetime: float | None = None


def _own_request(api_key: int, version: int, correlation_id: int, message: Any) -> bytes:
    header = encode_request_header(api_key, version, correlation_id, TUNNEL_CLIENT_ID)
    return encode_frame(header + encode_request(api_key, version, message))


#: Sends one of the tunnel's own requests to the broker and returns the decoded answer.
Roundtrip = Callable[[int, int, Any], Awaitable[Any]]


def direct_roundtrip(stream: trio.abc.Stream) -> Roundtrip:
    """Requests straight on a fresh stream, before any client request shares it."""
    buffer = FrameBuffer(peer="broker")
    correlation = _OWN_CORRELATION_BASE

    async def roundtrip(api_key: int, version: int, message: Any) -> Any:
        nonlocal correlation
        correlation += 1
        await stream.send_all(_own_request(api_key, version, correlation, message))
        while (frame := buffer.next_frame()) is None:
            data = await stream.receive_some(65536)
            if not data:
                raise UpstreamError("broker closed the connection during authentication")
            buffer.feed(cast(bytes, data))
        if correlation_id_of_response(frame) != correlation:
            raise BrokerProtocolError("broker answered a SASL request with a wrong correlation id")
        offset = response_body_offset(frame, response_header_version(api_key, version))
        return decode_response(api_key, version, frame, offset)

    return roundtrip


async def sasl_exchange_via(roundtrip: Roundtrip, mechanism: SaslMechanism) -> float | None:
    """Run SaslHandshake v1 + SaslAuthenticate v1 rounds; return the session lifetime (s)."""
    handshake_cls = MESSAGE_CLASSES[ApiKey.SASL_HANDSHAKE][0]
    answer = await roundtrip(
        ApiKey.SASL_HANDSHAKE, 1, handshake_cls(version=1, mechanism=mechanism.name)
    )
    if answer.error_code != error_codes.NONE:
        offered = ", ".join(answer.mechanisms or ()) or "none"
        raise UpstreamError(
            f"broker does not accept SASL mechanism {mechanism.name} (it offers: {offered})"
        )
    auth_cls = MESSAGE_CLASSES[ApiKey.SASL_AUTHENTICATE][0]
    outgoing: bytes | None = mechanism.first()
    lifetime_ms = 0
    while outgoing is not None:
        reply = await roundtrip(
            ApiKey.SASL_AUTHENTICATE, 1, auth_cls(version=1, auth_bytes=outgoing)
        )
        if reply.error_code != error_codes.NONE:
            detail = reply.error_message or error_codes.NAMES.get(reply.error_code, "error")
            raise UpstreamError(f"broker refused SASL {mechanism.name} authentication: {detail}")
        lifetime_ms = int(reply.session_lifetime_ms or 0)
        outgoing = mechanism.step(bytes(reply.auth_bytes or b""))
    return lifetime_ms / 1000.0 if lifetime_ms > 0 else None


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UpstreamError(f"broker address {address!r} is not host:port")
    return host.strip("[]"), int(port)


async def open_upstream(
    host: str, port: int, security: UpstreamSecurity, grant_token: str | None
) -> Upstream:
    """Connect to one broker and authenticate as the settings say."""
    try:
        with trio.fail_after(security.connect_timeout):
            tcp = await trio.open_tcp_stream(host, port)
    except (OSError, trio.TooSlowError) as exc:
        raise UpstreamError(f"cannot reach broker {host}:{port}: {exc or 'timed out'}") from None
    stream: trio.abc.Stream = direct_stream(tcp)  # TLS runs over it too
    try:
        if security.uses_tls:
            tls = trio.SSLStream(
                stream,
                security.ssl_context(),
                server_hostname=security.tls_server_hostname or host,
                https_compatible=False,
            )
            with trio.fail_after(security.connect_timeout):
                await tls.do_handshake()
            stream = tls
        lifetime = None
        if security.uses_sasl:
            mechanism = make_mechanism(
                security.sasl_mechanism or "",
                username=security.sasl_username,
                password=security.sasl_password,
                token=grant_token,
            )
            with trio.fail_after(security.connect_timeout):
                lifetime = await sasl_exchange_via(direct_roundtrip(stream), mechanism)
        return Upstream(stream, lifetime)
    except BaseException as exc:
        await trio.aclose_forcefully(stream)
        if isinstance(exc, ssl.SSLError | ssl.CertificateError):
            raise UpstreamError(f"TLS with broker {host}:{port} failed: {exc}") from None
        if isinstance(exc, trio.BrokenResourceError):
            raise UpstreamError(
                f"TLS with broker {host}:{port} failed: {exc.__cause__ or exc}"
            ) from None
        if isinstance(exc, SaslError):
            raise UpstreamError(f"SASL with broker {host}:{port} failed: {exc}") from None
        if isinstance(exc, trio.TooSlowError):
            raise UpstreamError(f"broker {host}:{port} did not answer in time") from None
        raise


async def open_any(
    addresses: list[tuple[str, int]], security: UpstreamSecurity, grant_token: str | None
) -> tuple[Upstream, tuple[str, int]]:
    """Connect to the first reachable broker of a bootstrap list."""
    errors: list[str] = []
    for host, port in addresses:
        try:
            return await open_upstream(host, port, security, grant_token), (host, port)
        except UpstreamError as exc:
            errors.append(str(exc))
    raise UpstreamError("no bootstrap broker reachable: " + "; ".join(errors))


def parse_bootstrap(bootstrap: str) -> list[tuple[str, int]]:
    """Split "h1:p1,h2:p2" into addresses."""
    return [_split_address(a.strip()) for a in bootstrap.split(",") if a.strip()]
