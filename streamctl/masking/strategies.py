"""Masking strategies: redact, keep the last N characters, keyed hash, null, drop.

The keyed hash is HMAC-SHA256 under a key derived from the grant id and a secret only the
caller holds: equal values hash equally within one grant (so masked data can still be
joined), and the hashes mean nothing outside it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

from streamctl.masking.errors import MaskingError
from streamctl.masking.paths import DROP

REDACTED = "[REDACTED]"
HASH_PREFIX = "hmac:"
STRATEGIES = ("redact", "keep_last", "hash", "null", "drop")
DEFAULT_KEEP_LAST = 4

#: Masks one text span inside a string (or a whole text value): returns the replacement.
TextMask = Callable[[str], str]
#: Masks one JSON value at a field path: returns the replacement, None (null) or DROP.
ValueMask = Callable[[Any], Any]


def derive_hash_key(grant_id: str, secret: bytes) -> bytes:
    """The per-grant HMAC key: stable for one grant, unrelated across grants."""
    if not secret:
        raise MaskingError("the hash strategy needs a masking secret; none was given")
    return hmac.new(secret, b"streamctl/masking/v1/" + grant_id.encode(), hashlib.sha256).digest()


def _as_text(value: Any) -> str:
    """The text a non-string JSON value is masked as (its compact JSON form)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def text_mask(strategy: str, keep_last: int | None, hash_key: bytes | None) -> TextMask:
    """How a detected span (or a whole non-JSON value) is replaced under a strategy."""
    if strategy == "redact":
        return lambda text: REDACTED
    if strategy == "keep_last":
        n = DEFAULT_KEEP_LAST if keep_last is None else keep_last
        if n < 0:
            raise MaskingError(f"keep_last must not be negative (got {n})")

        def keep(value: Any) -> str:
            text = value if type(value) is str else _as_text(value)
            # A value no longer than N would be shown whole: mask all of it instead.
            if len(text) <= n:
                return "*" * len(text)
            return "*" * (len(text) - n) + text[len(text) - n :] if n else "*" * len(text)

        return keep
    if strategy == "hash":
        if hash_key is None:
            raise MaskingError("the hash strategy needs a masking secret; none was given")
        # HMAC-SHA256 (RFC 2104) with the keyed inner and outer states computed once: each
        # value then costs two hash-state copies instead of a full HMAC set-up.
        padded = hash_key.ljust(64, b"\0")
        inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
        outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))

        def digest(value: Any) -> str:
            text = value if type(value) is str else _as_text(value)
            mac = inner.copy()
            mac.update(text.encode("utf-8", "surrogatepass"))
            final = outer.copy()
            final.update(mac.digest())
            return HASH_PREFIX + final.digest()[:16].hex()

        return digest
    if strategy in ("null", "drop"):
        return lambda text: ""
    raise MaskingError(f"unknown masking strategy {strategy!r}; known: {', '.join(STRATEGIES)}")


def value_mask(strategy: str, keep_last: int | None, hash_key: bytes | None) -> ValueMask:
    """How a JSON value reached by a field path is replaced under a strategy."""
    if strategy == "null":
        return lambda value: None
    if strategy == "drop":
        return lambda value: DROP
    if strategy == "redact":
        text_mask(strategy, keep_last, hash_key)  # validates like the other strategies
        return lambda value: REDACTED
    # keep_last and hash take any JSON value (non-strings as their compact JSON text)
    return text_mask(strategy, keep_last, hash_key)
