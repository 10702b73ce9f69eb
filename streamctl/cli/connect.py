"""`streamctl connect`: get a grant, start the enforcing tunnel, point any Kafka client at it."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from typing import Annotated

import typer
from rich.live import Live
from rich.table import Table

from streamctl.cli.common import (
    OutputOpt,
    ProfileOpt,
    ReasonOpt,
    ServerOpt,
    Session,
    check_output,
    human_duration,
    note,
    open_session,
    parse_duration,
    print_json,
    stderr,
    stdout,
)
from streamctl.cli.exit_codes import ExitCode, UsageProblem
from streamctl.cli.grant_session import (
    IssuedGrant,
    RunningTunnel,
    local_tunnel,
    obtain_grant,
    upload_pending,
)
from streamctl.cli.grants import ApprovalOpt, OperationOpt, ReadOpt, TtlOpt, WriteOpt
from streamctl.cli.grants import operations_from as _operations
from streamctl.cli.local_tunnels import registered_tunnel

PortOpt = Annotated[
    int,
    typer.Option(
        "--port",
        envvar="STREAMCTL_PORT",
        help="Local bootstrap port (0 picks a free one).",
        metavar="PORT",
    ),
]


BOOTSTRAP_VARS = ("STREAMCTL_BOOTSTRAP", "KAFKA_BOOTSTRAP_SERVERS")
_NAMES = "|".join(BOOTSTRAP_VARS)
_BOOTSTRAP_REF = re.compile(rf"\$(?:\{{(?:{_NAMES})\}}|(?:{_NAMES})\b)")


def client_env(bootstrap: str) -> dict[str, str]:
    """The environment a child Kafka client gets: both common names for the bootstrap."""
    return {**os.environ, **dict.fromkeys(BOOTSTRAP_VARS, bootstrap)}


def exec_argv(command: list[str], bootstrap: str) -> list[str]:
    """--exec's words with $STREAMCTL_BOOTSTRAP / $KAFKA_BOOTSTRAP_SERVERS filled in.

    The command runs without a shell, yet users write `--exec 'kcat -b $STREAMCTL_BOOTSTRAP -L'`
    (the bootstrap is only known once the tunnel is up), so those two references are expanded
    here; anything else is passed through untouched.
    """
    return [_BOOTSTRAP_REF.sub(bootstrap, word) for word in command]


def _live_view(issued: IssuedGrant, running: RunningTunnel) -> Table:
    """The live panel: where to connect, what the grant allows, and what went through."""
    stats = running.stats
    table = Table.grid(padding=(0, 2))
    left = issued.grant.expires_at - time.time()
    table.add_row("bootstrap", f"[bold]{running.bootstrap}[/bold]")
    table.add_row("grant", f"{issued.grant_id} ({', '.join(sorted(issued.grant.operations))})")
    table.add_row("topics", ", ".join(issued.grant.topics))
    table.add_row("expires in", human_duration(left))
    table.add_row("connections", f"{stats.connections_open} open, {stats.connections_total} total")
    refused = (
        f"[red]{stats.requests_refused} refused[/red]" if stats.requests_refused else "0 refused"
    )
    table.add_row("requests", f"{stats.requests_allowed} allowed, {refused}")
    table.add_row("bytes", f"{stats.bytes_from_clients} in, {stats.bytes_to_clients} out")
    if stats.partitions_masked or stats.partitions_mask_failed:
        table.add_row(
            "masked",
            f"{stats.partitions_masked} partition fetches "
            f"({stats.partitions_mask_failed} failed closed)",
        )
    table.add_row("", "[dim]Ctrl-C to stop[/dim]")
    return table


def _wait_until_end(issued: IssuedGrant, running: RunningTunnel) -> None:
    """Keep the tunnel up until Ctrl-C or until it ends (expiry), with live counters on a tty."""
    if not sys.stderr.isatty():
        while not running.ended():
            time.sleep(0.5)
        return
    with Live(
        _live_view(issued, running), console=stderr, refresh_per_second=2, transient=True
    ) as live:
        while not running.ended():
            time.sleep(0.5)
            live.update(_live_view(issued, running))


def connect(
    topics: Annotated[list[str], typer.Argument(help="Topics (or glob patterns) to access.")],
    read: ReadOpt = False,
    write: WriteOpt = False,
    operation: OperationOpt = None,
    ttl: TtlOpt = None,
    reason: ReasonOpt = None,
    approval: ApprovalOpt = None,
    port: PortOpt = 0,
    exec_: Annotated[
        str | None,
        typer.Option(
            "--exec",
            envvar="STREAMCTL_CONNECT_EXEC",
            help="Run this client command with STREAMCTL_BOOTSTRAP and KAFKA_BOOTSTRAP_SERVERS "
            "set, then stop with its exit code (e.g. --exec 'kcat -b $STREAMCTL_BOOTSTRAP -L').",
            metavar="CMD",
        ),
    ] = None,
    profile: ProfileOpt = None,
    server: ServerOpt = None,
    output: OutputOpt = None,
) -> None:
    """Open a local tunnel to Kafka under a fresh grant; point any Kafka client at it.

    Runs until Ctrl-C or until the grant expires. Writes to high-value topics
    need an approval (see request-approval); one you already have is found
    automatically.
    """
    fmt = check_output(output)
    ops = _operations(read, write, operation)
    if port < 0 or port > 65535:
        raise UsageProblem(f"--port {port} is not a TCP port", code="usage")
    command = shlex.split(exec_) if exec_ else None
    if exec_ is not None and not command:
        raise UsageProblem("--exec needs a command", code="usage")
    ttl_seconds = parse_duration(ttl, what="--ttl") if ttl else None
    with open_session(profile, server) as session:
        issued = obtain_grant(
            session,
            topics=topics,
            operations=ops,
            ttl_seconds=ttl_seconds,
            reason=reason,
            approval_id=approval,
        )
        upload_pending(session)
        _serve(session, issued, fmt=fmt, port=port, command=command)


def _serve(
    session: Session, issued: IssuedGrant, *, fmt: str, port: int, command: list[str] | None
) -> None:
    """Run the tunnel: hand it to --exec's command, or keep it up until Ctrl-C or expiry."""
    with local_tunnel(session, issued, port=port) as running:
        bootstrap = running.bootstrap
        info = {
            "bootstrap": bootstrap,
            "grant_id": issued.grant_id,
            "topics": list(issued.grant.topics),
            "operations": sorted(issued.grant.operations),
            "expires_at": issued.grant.expires_at,
            "profile": session.profile,
            "session_id": running.recorder.session_id if running.recorder else None,
        }
        with registered_tunnel(info):
            if fmt == "json":
                print_json(info)
            else:
                stdout.print(bootstrap)
                note(
                    f"Tunnel up for {', '.join(issued.grant.topics)} "
                    f"({', '.join(sorted(issued.grant.operations))}); grant "
                    f"{issued.grant_id} expires in "
                    f"{human_duration(issued.grant.expires_at - time.time())}."
                )
            if command is not None:
                try:
                    result = subprocess.run(
                        exec_argv(command, bootstrap), env=client_env(bootstrap), check=False
                    )
                except FileNotFoundError:
                    raise UsageProblem(
                        f"--exec: command not found: {command[0]}", code="usage"
                    ) from None
                except KeyboardInterrupt:
                    raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
                if result.returncode != 0:
                    raise typer.Exit(result.returncode)
                return
            try:
                _wait_until_end(issued, running)
            except KeyboardInterrupt:
                note("Tunnel closed.")
                return
            note(
                f"Tunnel closed: {running.tunnel.stop_reason or 'the grant expired'}. "
                "Run the same command to get a new grant."
            )
