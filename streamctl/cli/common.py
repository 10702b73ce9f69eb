"""What every command shares: option definitions, the resolved profile, and the API client.

Options are declared once here so each command uses the same names, the same
environment variables and the same help text.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from streamctl.cli.exit_codes import UsageProblem
from streamctl.client.api import AccessClient
from streamctl.client.credentials import AccessTokenSource, BotLogin, StoredLogin
from streamctl.client.errors import NotLoggedIn
from streamctl.client.oidc import IssuerMetadata, discover
from streamctl.client.profiles import (
    DEFAULT_PROFILE,
    Config,
    ConfigError,
    data_dir,
    load_config,
    valid_profile_name,
)
from streamctl.client.token_store import OpenedStore, open_token_store

#: Output formats; not every command has a "raw" form.
OUTPUT_FORMATS = ("table", "json", "raw")

ProfileOpt = Annotated[
    str | None,
    typer.Option(
        "--profile",
        "-p",
        envvar="STREAMCTL_PROFILE",
        help="Profile to use (one per access server / cluster).",
        show_default=False,
        metavar="NAME",
    ),
]
ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="STREAMCTL_SERVER",
        help="Access server URL; overrides the profile's `server`.",
        show_default=False,
        metavar="URL",
    ),
]
OutputOpt = Annotated[
    str | None,
    typer.Option(
        "--output",
        "-o",
        envvar="STREAMCTL_OUTPUT",
        help="Output format: table or json.",
        show_default=False,
        metavar="FORMAT",
    ),
]
ReasonOpt = Annotated[
    str | None,
    typer.Option(
        "--reason",
        "-r",
        envvar="STREAMCTL_REASON",
        help="Why you need this access.",
        metavar="TEXT",
    ),
]

stdout = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def parse_duration(text: str, *, what: str = "duration") -> int:
    """Seconds from `90s`, `30m`, `1h30m`, `2h` or a bare number of seconds."""
    text = text.strip().lower()
    if text.isdigit():
        return int(text)
    parts = re.fullmatch(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    if not text or parts is None or not any(parts.groups()):
        raise UsageProblem(
            f"{what} {text!r} is not a duration",
            hint="use forms like 90s, 30m, 1h or 1h30m",
            code="usage",
        )
    d, h, m, s = (int(g) if g else 0 for g in parts.groups())
    return ((d * 24 + h) * 60 + m) * 60 + s


def parse_time(text: str, *, what: str = "time") -> datetime:
    """An absolute UTC time from ISO 8601, or a relative `-15m` / `+1h` from now."""
    text = text.strip()
    now = datetime.now(UTC)
    if text[:1] in "+-" and len(text) > 1:
        seconds = parse_duration(text[1:], what=what)
        return datetime.fromtimestamp(
            now.timestamp() + (seconds if text[0] == "+" else -seconds), UTC
        )
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageProblem(
            f"{what} {text!r} is not a time",
            hint="use ISO 8601 (2026-01-31T14:00Z) or relative (-15m, +1h)",
            code="usage",
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def human_duration(seconds: float) -> str:
    """`1h 05m`, `4m 10s`, `12s`: for countdowns and expiry columns."""
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h {m:02d}m"
    if m:
        return f"{m}m {s:02d}s"
    return f"{s}s"


def format_when(value: Any) -> str:
    """A server timestamp (ISO string or POSIX seconds) as short UTC text."""
    epoch = to_epoch(value)
    if epoch is None:
        return "-" if value in (None, "") else str(value)
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%MZ")


def format_window(start: Any, end: Any) -> str:
    """`2026-01-31 14:00-14:30Z`, or two full times when the window spans days."""
    a, b = format_when(start), format_when(end)
    if a[:10] == b[:10] and len(a) == len(b) == 17:
        return f"{a[:-1]}-{b[11:]}"
    return f"{a} -> {b}"


def to_epoch(value: Any) -> float | None:
    """POSIX seconds from an ISO string or a number, None when unknown."""
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    return None


def check_output(output: str | None, allowed: tuple[str, ...] = ("table", "json")) -> str:
    """Validate `-o`: the default is a table on a terminal-friendly form."""
    value = (output or "table").lower()
    if value not in allowed:
        raise UsageProblem(
            f"--output {value!r} is not supported here",
            hint=f"use one of: {', '.join(allowed)}",
            code="usage",
        )
    return value


def print_json(data: Any) -> None:
    """Machine-readable output: pretty on a terminal, compact one line when piped."""
    import json

    if sys.stdout.isatty():
        stdout.print_json(json.dumps(data, default=str))
    else:
        sys.stdout.write(json.dumps(data, default=str, sort_keys=True) + "\n")
        sys.stdout.flush()


def note(message: str) -> None:
    """Status lines go to stderr so stdout stays clean for data and pipes."""
    stderr.print(message)


@dataclass
class Session:
    """The resolved profile, its token store and an API client acting for the user or bot."""

    profile: str
    config: Config
    settings: dict[str, str]
    server: str | None
    opened: OpenedStore
    bot: tuple[str, str] | None = None
    _client: AccessClient | None = field(default=None, repr=False)
    _meta: IssuerMetadata | None = field(default=None, repr=False)

    @property
    def lock_path(self) -> Path:
        return data_dir() / "locks" / f"{self.profile}.refresh.lock"

    def require_server(self) -> str:
        if not self.server:
            raise NotLoggedIn(
                f"no access server configured for profile {self.profile!r}",
                hint="run `streamctl login --server URL` or set STREAMCTL_SERVER",
                code="no_server",
            )
        return self.server

    def anonymous(self) -> AccessClient:
        """A client for the unauthenticated endpoints (login config, JWKS)."""
        if self._client is None:
            self._client = AccessClient(self.require_server())
        return self._client

    def issuer_metadata(self) -> IssuerMetadata:
        """Discovery of the issuer the server names (built-in or external), once per command."""
        if self._meta is None:
            login_config = self.anonymous().login_config()
            issuer = str(login_config.get("issuer") or self.require_server())
            self._meta = discover(self.anonymous().http, issuer)
        return self._meta

    def credentials(self) -> AccessTokenSource:
        if self.bot is not None:
            client_id, secret = self.bot
            return BotLogin(self.anonymous().http, self.issuer_metadata, client_id, secret)
        return StoredLogin(self.profile, self.opened.store, self.anonymous().http, self.lock_path)

    def client(self) -> AccessClient:
        """An authenticated client; a missing login is reported when the first call needs it."""
        return self.anonymous().with_credentials(self.credentials())

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_secret_file(path: str) -> str:
    """A bot secret from a file (never from argv, where `ps` would show it)."""
    try:
        secret = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UsageProblem(
            f"cannot read the client secret file {path}: {exc.strerror}", code="usage"
        ) from exc
    if not secret:
        raise UsageProblem(f"the client secret file {path} is empty", code="usage")
    return secret


def bot_credentials_from_env() -> tuple[str, str] | None:
    """Bots configure themselves with STREAMCTL_CLIENT_ID plus a secret file or secret env."""
    client_id = os.environ.get("STREAMCTL_CLIENT_ID")
    if not client_id:
        return None
    secret = os.environ.get("STREAMCTL_CLIENT_SECRET")
    secret_file = os.environ.get("STREAMCTL_CLIENT_SECRET_FILE")
    if secret_file:
        secret = read_secret_file(secret_file)
    if not secret:
        raise UsageProblem(
            "STREAMCTL_CLIENT_ID is set but no secret is",
            hint="set STREAMCTL_CLIENT_SECRET_FILE to a file holding the client secret",
            code="usage",
        )
    return client_id, secret


def open_session(
    profile: str | None,
    server: str | None,
    *,
    insecure_storage: bool | None = None,
    bot: tuple[str, str] | None = None,
    warn: bool = True,
) -> Session:
    """Resolve the profile and server, pick the token store, and say so if it is memory only."""
    config = load_config()
    name = profile or config.default_profile or DEFAULT_PROFILE
    if not valid_profile_name(name):
        raise ConfigError(
            f"profile name {name!r} is not valid",
            hint="use letters, digits, '-', '_' or '.'",
            code="usage",
        )
    settings = config.profile(name)
    bot = bot or bot_credentials_from_env()
    file_storage = (
        insecure_storage
        if insecure_storage is not None
        else settings.get("token_storage") == "file"
    )
    opened = open_token_store(
        insecure_storage=file_storage,
        file_directory=data_dir() / "tokens",
        memory_only=bot is not None,
    )
    if warn and opened.warning:
        note(f"[yellow]warning:[/yellow] {opened.warning}")
    resolved_server = (server or settings.get("server") or "").rstrip("/") or None
    return Session(
        profile=name,
        config=config,
        settings=settings,
        server=resolved_server,
        opened=opened,
        bot=bot,
    )
