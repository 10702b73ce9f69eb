"""`streamctl server ...`: create a starter server folder, run the server, rotate its key."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from streamctl.cli.audit_export import audit_export
from streamctl.server.config import ConfigError, load_config

server_app = typer.Typer(
    name="server",
    help="Run and administer the access server.",
    no_args_is_help=True,
)

ConfigOpt = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        envvar="STREAMCTL_SERVER_CONFIG",
        help="The server settings file (server.yaml from `streamctl server init`).",
        dir_okay=False,
    ),
]

#: Environment variables that set a dev user's password at init (never on the command line).
PASSWORD_ENV = {"alice": "STREAMCTL_ALICE_PASSWORD", "bob": "STREAMCTL_BOB_PASSWORD"}


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


server_app.command("audit-export")(audit_export)


@server_app.command("init")
def init(
    folder: Annotated[Path, typer.Argument(help="Folder to create the starter files in.")],
    issuer_url: Annotated[
        str, typer.Option(help="Public base URL of this server (the OIDC issuer).")
    ] = "http://127.0.0.1:8600",
    database_url: Annotated[
        str, typer.Option(help="SQLAlchemy URL; relative SQLite paths are under FOLDER.")
    ] = "sqlite:///streamctl.db",
    port: Annotated[int, typer.Option(help="Port `server run` listens on.")] = 8600,
) -> None:
    """Write server.yaml, policy.yaml, a signing key (0600) and dev users alice and bob.

    Dev passwords come from STREAMCTL_ALICE_PASSWORD / STREAMCTL_BOB_PASSWORD, or are
    generated and printed once.
    """
    from streamctl.server.starter import write_starter

    given = {u: os.environ[v] for u, v in PASSWORD_ENV.items() if os.environ.get(v)}
    try:
        result = write_starter(
            folder, issuer_url=issuer_url, database_url=database_url, passwords=given, port=port
        )
    except FileExistsError as exc:
        _fail(str(exc))
        return
    typer.echo(f"wrote {result.config_path}")
    typer.echo(f"wrote {result.policy_path}")
    typer.echo(f"wrote a signing key in {folder / 'keys'}")
    for user, role in (("alice", "engineer"), ("bob", "approver")):
        if user in given:
            typer.echo(f"dev user {user} ({role}): password from ${PASSWORD_ENV[user]}")
        else:
            typer.echo(f"dev user {user} ({role}): password {result.passwords[user]}  (shown once)")
    typer.echo(f"next: streamctl server run --config {result.config_path}")


@server_app.command("run")
def run(
    config: ConfigOpt,
    host: Annotated[str | None, typer.Option(help="Listen address (default from config).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default from config).")] = None,
) -> None:
    """Serve the access server (migrates the database first) until Ctrl-C or SIGTERM."""
    from streamctl.policy.document import PolicyError
    from streamctl.server.keys import KeyRingError
    from streamctl.server.runner import run_server

    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        cfg = load_config(config)
        run_server(cfg, host, port)
    except (ConfigError, PolicyError, KeyRingError) as exc:
        _fail(str(exc))


@server_app.command("rotate-key")
def rotate_key(
    config: ConfigOpt,
    algorithm: Annotated[
        str | None, typer.Option(help="ES256 or EdDSA (default: the config's key_algorithm).")
    ] = None,
) -> None:
    """Make a new signing key active; old public keys stay in the JWKS until their tokens expire."""
    from streamctl.policy.document import PolicyError, load_policy
    from streamctl.server.keys import KeyRing, KeyRingError

    try:
        cfg = load_config(config)
        policy = load_policy(cfg.policy_file)
        keep = max(cfg.access_token_ttl_seconds, policy.max_ttl_seconds) + 300
        entry = KeyRing(cfg.keys_dir, keep_seconds=keep).create(algorithm or cfg.key_algorithm)
    except (ConfigError, PolicyError, KeyRingError) as exc:
        _fail(str(exc))
        return
    typer.echo(
        f"new signing key {entry.kid} ({entry.alg}) is active; running servers use it "
        "from their next token on"
    )


@server_app.command("hash-secret")
def hash_secret() -> None:
    """Read a password or client secret on stdin; print its argon2 hash for server.yaml."""
    from streamctl.server.device_flow import hash_password

    secret = sys.stdin.readline().rstrip("\n")
    if not secret:
        _fail('nothing on stdin: pipe the secret in, e.g. `printf %s "$SECRET" | ...`')
    typer.echo(hash_password(secret))
