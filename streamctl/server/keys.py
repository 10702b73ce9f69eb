"""Signing keys: generated, rotated, and published as a JWKS that keeps retired keys a while.

Keys live as PEM files (0600) in one folder with a small `keys.json` index, so
every server process started from the same config signs with the same key and
publishes the same JWKS. A retired key stays in the JWKS until every token it
signed has expired (`retired_at + keep_seconds`), then its file is removed.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

INDEX = "keys.json"
SigningPrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


class KeyRingError(RuntimeError):
    """The key folder is missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class KeyEntry:
    """One key's index entry."""

    kid: str
    alg: str
    created_at: float
    retired_at: float | None = None


def _write_secret(path: Path, data: bytes) -> None:
    """Create a file readable by its owner only, never briefly world-readable."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(path, 0o600)


def _generate(alg: str) -> SigningPrivateKey:
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise KeyRingError(f"unsupported signing algorithm {alg!r} (use ES256 or EdDSA)")


def public_jwk(key: SigningPrivateKey, kid: str, alg: str) -> dict[str, Any]:
    """The public half as a JWK with kid, alg and use=sig."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        jwk: dict[str, Any] = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    else:
        jwk = json.loads(OKPAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return jwk


class KeyRing:
    """The key folder: the active signing key and the public keys still worth publishing."""

    def __init__(self, folder: Path, keep_seconds: float) -> None:
        self.folder = folder
        self.keep_seconds = keep_seconds
        self._parsed: dict[str, SigningPrivateKey] = {}  # a kid's key never changes

    def _index(self) -> list[KeyEntry]:
        try:
            raw = json.loads((self.folder / INDEX).read_text(encoding="utf-8"))
            return [KeyEntry(**entry) for entry in raw["keys"]]
        except FileNotFoundError as exc:
            raise KeyRingError(
                f"{self.folder}: no signing keys; run `streamctl server init` first"
            ) from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyRingError(f"{self.folder / INDEX}: unreadable key index ({exc})") from exc

    def _save_index(self, entries: list[KeyEntry]) -> None:
        data = json.dumps({"keys": [e.__dict__ for e in entries]}, indent=2).encode()
        tmp = self.folder / (INDEX + ".tmp")
        _write_secret(tmp, data)
        os.replace(tmp, self.folder / INDEX)

    def _load_private(self, entry: KeyEntry) -> SigningPrivateKey:
        cached = self._parsed.get(entry.kid)
        if cached is not None:
            return cached
        pem = (self.folder / f"{entry.kid}.pem").read_bytes()
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
            raise KeyRingError(f"{entry.kid}.pem: not an EC P-256 or Ed25519 key")
        self._parsed[entry.kid] = key
        return key

    def create(self, alg: str) -> KeyEntry:
        """Generate a new key and make it the active one, retiring the previous one."""
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        try:
            entries = self._index()
        except KeyRingError:
            entries = []
        now = time.time()
        entries = [
            e if e.retired_at is not None else KeyEntry(e.kid, e.alg, e.created_at, now)
            for e in entries
        ]
        key = _generate(alg)
        kid = secrets.token_urlsafe(12)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_secret(self.folder / f"{kid}.pem", pem)
        entry = KeyEntry(kid=kid, alg=alg, created_at=now)
        entries.append(entry)
        self._save_index(self._prune(entries, now))
        return entry

    def _prune(self, entries: list[KeyEntry], now: float) -> list[KeyEntry]:
        """Forget retired keys whose tokens have all expired; delete their files."""
        kept = []
        for e in entries:
            if e.retired_at is not None and e.retired_at + self.keep_seconds < now:
                (self.folder / f"{e.kid}.pem").unlink(missing_ok=True)
            else:
                kept.append(e)
        return kept

    def active(self) -> tuple[KeyEntry, SigningPrivateKey]:
        """The key new tokens are signed with."""
        current = [e for e in self._index() if e.retired_at is None]
        if not current:
            raise KeyRingError(
                f"{self.folder}: no active signing key; run `streamctl server rotate-key`"
            )
        entry = max(current, key=lambda e: e.created_at)
        return entry, self._load_private(entry)

    def jwks(self) -> dict[str, Any]:
        """Every public key whose tokens may still be alive."""
        now = time.time()
        keys = []
        for e in self._index():
            if e.retired_at is not None and e.retired_at + self.keep_seconds < now:
                continue
            keys.append(public_jwk(self._load_private(e), e.kid, e.alg))
        return {"keys": keys}

    def sign(self, claims: dict[str, Any], typ: str = "JWT") -> tuple[str, str]:
        """Sign claims with the active key; returns (token, kid)."""
        entry, key = self.active()
        token = jwt.encode(claims, key, algorithm=entry.alg, headers={"kid": entry.kid, "typ": typ})
        return token, entry.kid
