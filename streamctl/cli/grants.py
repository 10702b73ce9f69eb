"""`streamctl grant request|ls|status|revoke`: grants as plain API calls, for scripts.

`streamctl connect` requests its own grant; these commands are for automation
that wants the token itself (printed only with `-o json`).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.table import Table

from streamctl.cli.common import (
    OutputOpt,
    ProfileOpt,
    ReasonOpt,
    ServerOpt,
    check_output,
    format_when,
    human_duration,
    open_session,
    parse_duration,
    print_json,
    stdout,
    to_epoch,
)
from streamctl.cli.exit_codes import UsageProblem, help_epilog

grant_app = typer.Typer(
    help="Request, list and revoke grants (connect does this for you).",
    no_args_is_help=True,
    epilog=help_epilog(),
)

ReadOpt = Annotated[bool, typer.Option("--read", help="Ask to consume the topics.", metavar="")]
WriteOpt = Annotated[
    bool, typer.Option("--write", help="Ask to produce to the topics.", metavar="")
]
TtlOpt = Annotated[
    str | None,
    typer.Option(
        "--ttl",
        envvar="STREAMCTL_TTL",
        help="How long the grant should last (e.g. 30m); the policy caps it.",
        metavar="DURATION",
    ),
]
ApprovalOpt = Annotated[
    str | None,
    typer.Option(
        "--approval",
        envvar="STREAMCTL_APPROVAL",
        help="Approval id to use (needed for writes to high-value topics).",
        metavar="ID",
    ),
]
OperationOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--operation",
        help="Extra operation kinds: create, delete, alter, describe.",
        metavar="KIND",
    ),
]


def operations_from(read: bool, write: bool, extra: list[str] | None) -> list[str]:
    """The operation kinds asked for; reading is the default when nothing is named."""
    from streamctl.kafka.operations import GRANTABLE

    ops: list[str] = []
    if read:
        ops.append("read")
    if write:
        ops.append("write")
    for op in extra or []:
        if op not in {o.value for o in GRANTABLE}:
            raise UsageProblem(
                f"{op!r} is not an operation kind",
                hint=f"use one of: {', '.join(sorted(o.value for o in GRANTABLE))}",
                code="usage",
            )
        if op not in ops:
            ops.append(op)
    return ops or ["read"]


def grant_rows(grants: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in ("GRANT", "TOPICS", "OPERATIONS", "STATE", "EXPIRES"):
        table.add_column(column, no_wrap=column in ("GRANT", "ID"))
    now = time.time()
    for grant in grants:
        expires = to_epoch(grant.get("expires_at"))
        if grant.get("revoked"):
            state = "revoked"
        elif (expires is not None and expires <= now) or grant.get("active") is False:
            state = "expired"
        else:
            state = "active"
        left = f" ({human_duration(expires - now)} left)" if state == "active" and expires else ""
        table.add_row(
            str(grant.get("grant_id", "")),
            ",".join(map(str, grant.get("topics", []))),
            ",".join(map(str, grant.get("operations", []))),
            state,
            format_when(grant.get("expires_at")) + left,
        )
    return table


@grant_app.command("request", epilog=help_epilog())
def request(
    topics: Annotated[list[str], typer.Argument(help="Topics (or glob patterns) to access.")],
    read: ReadOpt = False,
    write: WriteOpt = False,
    operation: OperationOpt = None,
    ttl: TtlOpt = None,
    reason: ReasonOpt = None,
    approval: ApprovalOpt = None,
    cluster: Annotated[
        str | None,
        typer.Option("--cluster", envvar="STREAMCTL_CLUSTER", help="Cluster name.", metavar="NAME"),
    ] = None,
    profile: ProfileOpt = None,
    server: ServerOpt = None,
    output: OutputOpt = None,
) -> None:
    """Ask the access server for a grant; prints its id (the token itself with -o json)."""
    fmt = check_output(output)
    ops = operations_from(read, write, operation)
    ttl_seconds = parse_duration(ttl, what="--ttl") if ttl else None
    with open_session(profile, server) as session:
        grant = session.client().request_grant(
            topics=topics,
            operations=ops,
            ttl_seconds=ttl_seconds,
            reason=reason,
            cluster=cluster or session.settings.get("cluster"),
            approval_id=approval,
        )
    if fmt == "json":
        print_json(grant)
        return
    expires = to_epoch(grant.get("expires_at"))
    left = f" ({human_duration(expires - time.time())})" if expires else ""
    stdout.print(
        f"Grant [bold]{grant.get('grant_id')}[/bold] for {', '.join(topics)} "
        f"({', '.join(ops)}) until {format_when(grant.get('expires_at'))}{left}"
    )


@grant_app.command("ls", epilog=help_epilog())
def list_grants(
    all_: Annotated[
        bool, typer.Option("--all", "-a", help="Include expired and revoked.", metavar="")
    ] = False,
    profile: ProfileOpt = None,
    server: ServerOpt = None,
    output: OutputOpt = None,
) -> None:
    """List your grants (active ones unless --all)."""
    fmt = check_output(output)
    with open_session(profile, server) as session:
        grants = session.client().list_grants()
    if not all_:
        now = time.time()
        grants = [
            g
            for g in grants
            if not g.get("revoked")
            and g.get("active") is not False
            and (to_epoch(g.get("expires_at")) or now + 1) > now
        ]
    for grant in grants:
        grant.pop("token", None)  # listing never re-exposes credentials
    if fmt == "json":
        print_json(grants)
    elif not grants:
        stdout.print("No active grants." if not all_ else "No grants.")
    else:
        stdout.print(grant_rows(grants))


@grant_app.command("status", epilog=help_epilog())
def status(
    grant_id: Annotated[str, typer.Argument(help="The grant id.", metavar="GRANT_ID")],
    profile: ProfileOpt = None,
    server: ServerOpt = None,
    output: OutputOpt = None,
) -> None:
    """Show whether a grant is still active."""
    fmt = check_output(output)
    with open_session(profile, server) as session:
        info = session.client().grant_status(grant_id)
    if fmt == "json":
        print_json(info)
    else:
        stdout.print(grant_rows([{**info, "grant_id": info.get("grant_id", grant_id)}]))


@grant_app.command("revoke", epilog=help_epilog())
def revoke(
    grant_id: Annotated[str, typer.Argument(help="The grant id.", metavar="GRANT_ID")],
    profile: ProfileOpt = None,
    server: ServerOpt = None,
    output: OutputOpt = None,
) -> None:
    """Revoke a grant before it expires (tunnels using it stop)."""
    fmt = check_output(output)
    with open_session(profile, server) as session:
        info = session.client().revoke_grant(grant_id)
    if fmt == "json":
        print_json(info)
    else:
        stdout.print(f"Grant {grant_id} revoked.")
