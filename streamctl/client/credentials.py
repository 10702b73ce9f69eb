"""A valid access token on demand: stored login, transparent refresh, and bot credentials.

Two `streamctl` commands started together may both find the access token
expired. Refresh tokens are often single-use (rotated), so only one of them may
refresh: an exclusive lock file per profile serialises the refresh, and the
second command re-reads the store under the lock and finds the new token.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import httpx

from streamctl.client import oidc
from streamctl.client.errors import NotLoggedIn, TokenStorageError
from streamctl.client.token_store import TokenStore
from streamctl.client.tokens import TokenSet

#: Longest wait for another command's refresh before giving up.
LOCK_TIMEOUT_S = 30.0


class AccessTokenSource(Protocol):
    """Anything that can hand the API client a bearer token."""

    def access_token(self) -> str: ...
    def after_unauthorized(self) -> bool: ...


@contextmanager
def exclusive_lock(path: Path, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold an OS-level exclusive lock on `path`; released even if the process dies."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
            import msvcrt

            while True:
                try:
                    msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            try:
                yield
            finally:
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TokenStorageError(
                            f"another streamctl command holds {path} for too long",
                            hint="wait for it to finish, then try again",
                        ) from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class StoredLogin:
    """The login of one profile, from its token store, refreshed in place when it runs out."""

    def __init__(
        self,
        profile: str,
        store: TokenStore,
        http: httpx.Client,
        lock_path: Path,
        *,
        on_refresh: Callable[[TokenSet], None] | None = None,
    ) -> None:
        self._profile = profile
        self._store = store
        self._http = http
        self._lock_path = lock_path
        self._on_refresh = on_refresh
        self._cached: TokenSet | None = None

    def tokens(self) -> TokenSet:
        """The current token set, refreshed first when it is about to expire."""
        tokens = self._cached or self._store.load(self._profile)
        if tokens is None:
            raise NotLoggedIn(
                f"not logged in (profile {self._profile!r})",
                hint="run `streamctl login`",
                code="not_logged_in",
            )
        if tokens.expired():
            tokens = self._refresh(tokens)
        self._cached = tokens
        return tokens

    def access_token(self) -> str:
        return self.tokens().access_token

    def after_unauthorized(self) -> bool:
        """The server refused our token: refresh once (it may have been revoked early)."""
        tokens = self._cached or self._store.load(self._profile)
        if tokens is None or not tokens.refresh_token:
            return False
        self._cached = self._refresh(tokens, force=True)
        return True

    def _refresh(self, seen: TokenSet, *, force: bool = False) -> TokenSet:
        with exclusive_lock(self._lock_path):
            current = self._store.load(self._profile) or seen
            # Another command may have refreshed while we waited for the lock.
            if current.access_token != seen.access_token and not current.expired():
                return current
            if not force and not current.expired():
                return current
            fresh = oidc.refresh(self._http, current)
            self._store.save(self._profile, fresh)
            if self._on_refresh is not None:
                self._on_refresh(fresh)
            return fresh


class BotLogin:
    """A bot's client-credentials login: fetched on first use, kept in memory, never stored."""

    def __init__(
        self,
        http: httpx.Client,
        meta_of: Callable[[], oidc.IssuerMetadata],
        client_id: str,
        client_secret: str,
    ) -> None:
        self._http = http
        self._meta_of = meta_of
        self._client_id = client_id
        self._client_secret = client_secret
        self._tokens: TokenSet | None = None

    def tokens(self) -> TokenSet:
        if self._tokens is None or self._tokens.expired():
            self._tokens = oidc.client_credentials(
                self._http, self._meta_of(), self._client_id, self._client_secret
            )
        return self._tokens

    def access_token(self) -> str:
        return self.tokens().access_token

    def after_unauthorized(self) -> bool:
        self._tokens = None
        return True
