"""SASL client mechanisms the tunnel uses to authenticate to brokers: PLAIN, SCRAM, OAUTHBEARER.

Each mechanism is a small sans-I/O state machine: `first()` gives the initial client message
and `step(server_message)` the next one, or None when the exchange is complete on the client's
side (after checking the server's last word, such as SCRAM's server signature). The upstream
module carries these bytes in SaslAuthenticate requests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import unicodedata
from typing import Protocol


class SaslError(Exception):
    """The exchange failed; the message says why and never contains a secret."""


class SaslMechanism(Protocol):
    """One client side of a SASL mechanism."""

    name: str

    def first(self) -> bytes: ...

    def step(self, server_message: bytes) -> bytes | None: ...


class Plain:
    """RFC 4616: authorization id (empty), user name and password in one message."""

    name = "PLAIN"

    def __init__(self, username: str, password: str) -> None:
        self._username = username
        self._password = password

    def first(self) -> bytes:
        return b"\0" + self._username.encode() + b"\0" + self._password.encode()

    def step(self, server_message: bytes) -> bytes | None:
        return None


class OAuthBearer:
    """RFC 7628 initial client response presenting a bearer token (here: the grant token)."""

    name = "OAUTHBEARER"

    def __init__(self, token: str) -> None:
        self._token = token
        self._refusal: str | None = None

    def first(self) -> bytes:
        return b"n,,\x01auth=Bearer " + self._token.encode("ascii") + b"\x01\x01"

    def step(self, server_message: bytes) -> bytes | None:
        if self._refusal is not None:
            raise SaslError(f"broker refused the token: {self._refusal}")
        if not server_message:
            return None  # empty final message: the token was accepted
        # An error challenge (JSON status): RFC 7628 wants a lone %x01 so the server can fail.
        self._refusal = server_message.decode("utf-8", "replace")[:200]
        return b"\x01"


def _saslname(name: str) -> str:
    return name.replace("=", "=3D").replace(",", "=2C")


def _parse_attributes(message: bytes) -> dict[str, str]:
    try:
        text = message.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslError("SCRAM server message is not UTF-8") from None
    out: dict[str, str] = {}
    for part in text.split(","):
        if len(part) < 2 or part[1] != "=":
            raise SaslError("SCRAM server message is malformed")
        out[part[0]] = part[2:]
    return out


class Scram:
    """RFC 5802 / 7677 SCRAM-SHA-256 and SCRAM-SHA-512, client side, without channel binding."""

    def __init__(self, hash_name: str, username: str, password: str, nonce: str | None = None):
        if hash_name not in ("sha256", "sha512"):
            raise ValueError("SCRAM hash must be sha256 or sha512")
        self.name = "SCRAM-SHA-256" if hash_name == "sha256" else "SCRAM-SHA-512"
        self._hash = hash_name
        self._username = username
        self._password = unicodedata.normalize("NFKC", password)
        self._nonce = nonce or secrets.token_urlsafe(24)
        self._client_first_bare = f"n={_saslname(username)},r={self._nonce}"
        self._server_signature: bytes | None = None

    def first(self) -> bytes:
        return ("n,," + self._client_first_bare).encode()

    def _hmac(self, key: bytes, msg: bytes) -> bytes:
        return hmac.new(key, msg, self._hash).digest()

    def step(self, server_message: bytes) -> bytes | None:
        if self._server_signature is not None:
            self._verify_final(server_message)
            return None
        attrs = _parse_attributes(server_message)
        if "e" in attrs:
            raise SaslError(f"SCRAM server refused: {attrs['e']}")
        try:
            nonce, salt_b64, iterations = attrs["r"], attrs["s"], int(attrs["i"])
        except (KeyError, ValueError):
            raise SaslError("SCRAM server-first message lacks nonce, salt or iterations") from None
        if not nonce.startswith(self._nonce) or nonce == self._nonce:
            raise SaslError("SCRAM server nonce does not extend the client nonce")
        if not 1 <= iterations <= 10_000_000:
            raise SaslError(f"SCRAM iteration count {iterations} is out of range")
        salt = base64.b64decode(salt_b64)
        salted = hashlib.pbkdf2_hmac(self._hash, self._password.encode(), salt, iterations)
        client_key = self._hmac(salted, b"Client Key")
        stored_key = hashlib.new(self._hash, client_key).digest()
        without_proof = f"c=biws,r={nonce}"
        auth_message = ",".join(
            (self._client_first_bare, server_message.decode(), without_proof)
        ).encode()
        signature = self._hmac(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = self._hmac(salted, b"Server Key")
        self._server_signature = self._hmac(server_key, auth_message)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def _verify_final(self, server_message: bytes) -> None:
        attrs = _parse_attributes(server_message)
        if "e" in attrs:
            raise SaslError(f"SCRAM server refused: {attrs['e']}")
        if self._server_signature is None or "v" not in attrs:
            raise SaslError("SCRAM exchange ended without a server signature")
        if not hmac.compare_digest(base64.b64decode(attrs["v"]), self._server_signature):
            raise SaslError("SCRAM server signature does not match: the broker is not genuine")


def make_mechanism(
    mechanism: str, *, username: str | None, password: str | None, token: str | None
) -> SaslMechanism:
    """Build the client side of a mechanism by its Kafka name, checking its credentials exist."""
    upper = mechanism.upper()
    if upper == "OAUTHBEARER":
        if not token:
            raise SaslError("OAUTHBEARER needs a grant token")
        return OAuthBearer(token)
    if username is None or password is None:
        raise SaslError(f"{upper} needs a user name and a password")
    if upper == "PLAIN":
        return Plain(username, password)
    if upper == "SCRAM-SHA-256":
        return Scram("sha256", username, password)
    if upper == "SCRAM-SHA-512":
        return Scram("sha512", username, password)
    raise SaslError(f"SASL mechanism {mechanism!r} is not supported")
