"""Where login tokens live: the OS keyring, this process's memory, or (only when asked) a 0600 file.

Keyring backends can hang (a locked Secret Service waiting on a prompt that never
shows on a headless box), so every keyring call runs with a timeout; a backend
that fails or hangs turns into an in-memory store plus a message saying so.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from streamctl.client.errors import TokenStorageError
from streamctl.client.tokens import TokenSet

#: The keyring "service" every streamctl entry is filed under; the username is the profile.
KEYRING_SERVICE = "streamctl"
#: How long one keyring call may take before we give up on the keyring for this process.
KEYRING_TIMEOUT_S = 5.0

T = TypeVar("T")


class TokenStore(Protocol):
    """Load, save and clear the tokens of one profile."""

    description: str

    def load(self, profile: str) -> TokenSet | None: ...
    def save(self, profile: str, tokens: TokenSet) -> None: ...
    def clear(self, profile: str) -> bool: ...


class MemoryStore:
    """Tokens for the current process only: bots, and machines without a usable keyring."""

    description = "memory (this process only)"

    def __init__(self) -> None:
        self._tokens: dict[str, TokenSet] = {}

    def load(self, profile: str) -> TokenSet | None:
        return self._tokens.get(profile)

    def save(self, profile: str, tokens: TokenSet) -> None:
        self._tokens[profile] = tokens

    def clear(self, profile: str) -> bool:
        return self._tokens.pop(profile, None) is not None


class KeyringUnavailable(Exception):
    """The keyring backend failed or did not answer in time."""


def _with_timeout(fn: Callable[[], T], timeout: float) -> T:
    """Run one keyring call in a daemon thread so a hung backend cannot hang the CLI."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # reported to the caller below
            error.append(exc)

    worker = threading.Thread(target=target, name="keyring-call", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise KeyringUnavailable(f"the keyring did not answer within {timeout:g}s")
    if error:
        raise KeyringUnavailable(f"{type(error[0]).__name__}: {error[0]}") from error[0]
    return result[0]


class KeyringStore:
    """Tokens in the OS keyring (Keychain, Credential Manager, Secret Service, or configured)."""

    def __init__(self, timeout: float = KEYRING_TIMEOUT_S) -> None:
        import keyring

        self._keyring = keyring
        self._timeout = timeout
        backend = keyring.get_keyring()
        self.description = f"OS keyring ({type(backend).__module__}.{type(backend).__name__})"

    def probe(self) -> None:
        """Raise KeyringUnavailable unless the backend can really be read; called once at start."""
        backend = self._keyring.get_keyring()
        priority = getattr(backend, "priority", 1)
        if type(backend).__module__ == "keyring.backends.fail" or (
            isinstance(priority, int | float) and priority <= 0
        ):
            raise KeyringUnavailable("no keyring backend is available")
        _with_timeout(
            lambda: self._keyring.get_password(KEYRING_SERVICE, "__probe__"), self._timeout
        )

    def load(self, profile: str) -> TokenSet | None:
        try:
            text = _with_timeout(
                lambda: self._keyring.get_password(KEYRING_SERVICE, profile), self._timeout
            )
        except KeyringUnavailable as exc:
            raise TokenStorageError(
                f"could not read the login from the keyring: {exc}",
                hint="run `streamctl login --insecure-storage` to keep tokens in a file instead",
            ) from exc
        return TokenSet.from_json(text) if text else None

    def save(self, profile: str, tokens: TokenSet) -> None:
        payload = tokens.to_json()
        try:
            _with_timeout(
                lambda: self._keyring.set_password(KEYRING_SERVICE, profile, payload),
                self._timeout,
            )
        except KeyringUnavailable as exc:
            raise TokenStorageError(
                f"could not save the login in the keyring: {exc}",
                hint="run `streamctl login --insecure-storage` to keep tokens in a file instead",
            ) from exc

    def clear(self, profile: str) -> bool:
        if self.load(profile) is None:
            return False
        try:
            _with_timeout(
                lambda: self._keyring.delete_password(KEYRING_SERVICE, profile), self._timeout
            )
        except KeyringUnavailable as exc:
            raise TokenStorageError(f"could not remove the login from the keyring: {exc}") from exc
        return True


class FileStore:
    """Tokens in a 0600 JSON file per profile: only with an explicit `--insecure-storage`."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self.description = f"file {directory} (--insecure-storage)"

    def path_for(self, profile: str) -> Path:
        return self._directory / f"{profile}.tokens.json"

    def load(self, profile: str) -> TokenSet | None:
        path = self.path_for(profile)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TokenStorageError(f"could not read {path}: {exc.strerror}") from exc
        return TokenSet.from_json(text)

    def save(self, profile: str, tokens: TokenSet) -> None:
        """Write atomically, created 0600 from the start so the secret is never world-readable."""
        self._directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.path_for(profile)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(tokens.to_json())
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except OSError as exc:
            raise TokenStorageError(f"could not write {path}: {exc.strerror}") from exc

    def clear(self, profile: str) -> bool:
        try:
            self.path_for(profile).unlink()
        except FileNotFoundError:
            return False
        return True


@dataclass(frozen=True)
class OpenedStore:
    """The store chosen for this process, plus the warning to show when it is not the keyring."""

    store: TokenStore
    warning: str | None = None


def open_token_store(
    *,
    insecure_storage: bool,
    file_directory: Path,
    memory_only: bool = False,
    keyring_timeout: float = KEYRING_TIMEOUT_S,
) -> OpenedStore:
    """Pick the token store: memory for bots, a file when asked, else the keyring if it works."""
    if memory_only:
        return OpenedStore(MemoryStore())
    if insecure_storage:
        return OpenedStore(FileStore(file_directory))
    try:
        store = KeyringStore(timeout=keyring_timeout)
        store.probe()
    except KeyringUnavailable as exc:
        return OpenedStore(
            MemoryStore(),
            warning=(
                f"No usable OS keyring ({exc}): your login is kept for this command only. "
                "Set up a keyring, or run `streamctl login --insecure-storage` to keep tokens "
                "in a 0600 file."
            ),
        )
    except Exception as exc:  # a broken keyring plugin must not stop the CLI
        return OpenedStore(
            MemoryStore(),
            warning=(
                f"The OS keyring failed to load ({type(exc).__name__}): your login is kept for "
                "this command only. Run `streamctl login --insecure-storage` to keep tokens in "
                "a 0600 file."
            ),
        )
    return OpenedStore(store)
