"""`streamctl connect`: get a grant, start the enforcing tunnel, point any Kafka client at it."""

from __future__ import annotations

import os
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
from streamctl.cli.grant_session import IssuedGrant, local_tunnel, obtain_grant
from streamctl.cli.grants import ApprovalOpt, OperationOpt, ReadOpt, TtlOpt, WriteOpt
from streamctl.cli.grants import operations_from as _operations
from streamctl.cli.local_tunnels import registered_tunnel

PortOpt = Annotated[
    int,
    typer.Option("--port", envvar="STREAMCTL_PORT",
                 help="Local bootstrap port (0 picks a free one)."),
]


def client_env(bootstrap: str) -> dict[str, str]:
    """The environment a child Kafka client gets: both common names for the bootstrap."""
    return {**os.environ, "STREAMCTL_BOOTSTRAP": bootstrap, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}


def _live_view(issued: IssuedGrant, bootstrap: str) -> Table:
    table = Table.grid(padding=(0, 2))
    left = issued.grant.expires_at - time.time()
    table.add_row("bootstrap", f"[bold]{bootstrap}[/bold]")
    table.add_row("grant", f"{issued.grant_id} ({', '.join(sorted(issued.grant.operations))})")
    table.add_row("topics", ", ".join(issued.grant.topics))
    table.add_row("expires in", human_duration(left))
    table.add_row("", "[dim]Ctrl-C to stop[/dim]")
    return table


def _wait_until_expiry(issued: IssuedGrant, bootstrap: str) -> None:
    """Keep the tunnel up until Ctrl-C or the grant's expiry, with a live view on a terminal."""
    if not sys.stderr.isatty():
        while time.time() < issued.grant.expires_at:
            time.sleep(0.5)
        return
    with Live(_live_view(issued, bootstrap), console=stderr, refresh_per_second=2,
              transient=True) as live:
        while time.time() < issued.grant.expires_at:
            time.sleep(0.5)
            live.update(_live_view(issued, bootstrap))


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
            help="Run this client command with STREAMCTL_BOOTSTRAP and KAFKA_BOOTSTRAP_SERVERS "
            "set, then stop (e.g. --exec 'kcat -b $STREAMCTL_BOOTSTRAP -L').",
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
    session = open_session(profile, server)
    try:
        issued = obtain_grant(
            session, topics=topics, operations=ops,
            ttl_seconds=ttl_seconds,
            reason=reason, approval_id=approval,
        )
    finally:
        session.close()
    with local_tunnel(issued, port=port) as bootstrap:
        info = {
            "bootstrap": bootstrap,
            "grant_id": issued.grant_id,
            "topics": list(issued.grant.topics),
            "operations": sorted(issued.grant.operations),
            "expires_at": issued.grant.expires_at,
            "profile": session.profile,
        }
        with registered_tunnel(info):
            if fmt == "json":
                print_json(info)
            else:
                stdout.print(bootstrap)
                note(f"Tunnel up for {', '.join(topics)} ({', '.join(ops)}); grant "
                     f"{issued.grant_id} expires in "
                     f"{human_duration(issued.grant.expires_at - time.time())}.")
            if command is not None:
                try:
                    result = subprocess.run(command, env=client_env(bootstrap), check=False)
                except FileNotFoundError:
                    raise UsageProblem(f"--exec: command not found: {command[0]}",
                                       code="usage") from None
                except KeyboardInterrupt:
                    raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
                raise typer.Exit(result.returncode)
            try:
                _wait_until_expiry(issued, bootstrap)
            except KeyboardInterrupt:
                note("Tunnel closed.")
                return
            note("The grant expired; tunnel closed. Run the same command to get a new grant.")
