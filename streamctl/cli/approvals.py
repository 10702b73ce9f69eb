"""Just-in-time approvals: `request-approval`, and `approvals ls|show|approve|deny`.

A requester asks, waits with a spinner, and is told the exact command to run
next; a reviewer lists what they may review and decides with a reason.
"""

from __future__ import annotations

import sys
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
    format_window,
    human_duration,
    note,
    open_session,
    parse_duration,
    parse_time,
    print_json,
    stderr,
    stdout,
)
from streamctl.cli.exit_codes import ApprovalNotGranted, UsageProblem, help_epilog
from streamctl.cli.grants import ReadOpt, WriteOpt, operations_from
from streamctl.client.api import AccessClient

approvals_app = typer.Typer(
    help="List, approve and deny access requests (request one with request-approval).",
    no_args_is_help=True,
    epilog=help_epilog(),
)

#: One long-poll round; short enough that Ctrl-C and countdowns stay responsive.
WAIT_ROUND_S = 20


def next_command(approval: dict[str, Any]) -> str:
    """The command a requester runs once approved, spelled out so they can copy it."""
    ops = approval.get("operations") or []
    flags = "".join(f" --{op}" for op in ops if op in ("read", "write"))
    topics = " ".join(map(str, approval.get("topics") or []))
    return f"streamctl connect {topics}{flags} --approval {approval.get('id')}"


def _reviews_text(approval: dict[str, Any]) -> str:
    reviews = approval.get("reviews") or []
    parts = []
    for review in reviews:
        if isinstance(review, dict):
            who = review.get("reviewer") or review.get("subject") or "?"
            decision = {"approve": "approved", "deny": "denied"}.get(
                str(review.get("decision")), str(review.get("decision", "?"))
            )
            reason = review.get("reason")
            parts.append(f"{decision} by {who}" + (f": {reason}" if reason else ""))
    return "; ".join(parts)


def wait_for_decision(client: AccessClient, approval: dict[str, Any]) -> dict[str, Any]:
    """Long-poll until the approval leaves `pending`, with a spinner on a terminal."""
    approval_id = str(approval["id"])

    def rounds(update: Any) -> dict[str, Any]:
        current = approval
        try:
            while current.get("status") == "pending":
                update(current)
                current = client.wait_approval(approval_id, WAIT_ROUND_S)
        except KeyboardInterrupt:
            note(
                f"Stopped waiting; {approval_id} stays pending. "
                f"Resume with: streamctl approvals show {approval_id} --wait"
            )
            raise
        return current

    if not sys.stderr.isatty():
        note(f"Waiting for a reviewer to decide on {approval_id}...")
        return rounds(lambda _current: None)
    with stderr.status("Waiting for a reviewer...") as spinner:

        def update(current: dict[str, Any]) -> None:
            from streamctl.cli.common import to_epoch

            expires = to_epoch(current.get("expires_at"))
            left = (
                f" [dim]request expires in {human_duration(expires - time.time())}[/dim]"
                if expires
                else ""
            )
            spinner.update(f"Waiting for a reviewer to decide on {approval_id}...{left}")

        return rounds(update)


def report_decision(approval: dict[str, Any], fmt: str) -> None:
    """Print the outcome and the next step; a denial or expiry ends with exit code 7."""
    status = approval.get("status")
    if fmt == "json":
        print_json(approval)
    if status == "approved":
        if fmt != "json":
            stdout.print(
                f"[green]✓[/green] Approval {approval.get('id')} approved "
                f"({_reviews_text(approval) or 'approved'})."
            )
            window = format_window(approval.get("window_start"), approval.get("window_end"))
            stdout.print(f"  window: {window}")
            stdout.print(f"  next:   {next_command(approval)}")
        return
    if status == "pending":
        if fmt != "json":
            stdout.print(f"Approval {approval.get('id')} is pending review.")
            stdout.print(f"  wait for it: streamctl approvals show {approval.get('id')} --wait")
        return
    detail = _reviews_text(approval)
    raise ApprovalNotGranted(
        f"approval {approval.get('id')} was {status}" + (f" ({detail})" if detail else ""),
        hint="run `streamctl request-approval` again with more context in --reason",
        code=str(status),
    )


def request_approval(
    topics: Annotated[list[str], typer.Argument(help="Topics the approval is for.")],
    read: ReadOpt = False,
    write: WriteOpt = False,
    reason: ReasonOpt = None,
    for_: Annotated[
        str,
        typer.Option(
            "--for",
            envvar="STREAMCTL_APPROVAL_FOR",
            help="How long the access window lasts (e.g. 30m, 2h).",
            metavar="DURATION",
        ),
    ] = "30m",
    start: Annotated[
        str | None,
        typer.Option(
            "--start", help="When the window opens: ISO 8601 or +1h (default: now).", metavar="TIME"
        ),
    ] = None,
    reviewers: Annotated[
        list[str] | None,
        typer.Option(
            "--reviewers", help="Who should review (repeat, or comma-separated).", metavar="USER"
        ),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--nowait",
            envvar="STREAMCTL_WAIT",
            help="Wait for the decision (default) or return at once.",
            metavar="",
        ),
    ] = True,
    profile: ProfileOpt = None,
    server: ServerOpt = None,
    output: OutputOpt = None,
) -> None:
    """Ask for a just-in-time approval (writes to high-value topics need one).

    Waits until a reviewer decides, then prints the command to run next.
    """
    fmt = check_output(output)
    if not (read or write):
        raise UsageProblem(
            "say what the approval is for",
            hint="add --write (or --read) after the topics",
            code="usage",
        )
    duration = parse_duration(for_, what="--for")
    start_at = parse_time(start, what="--start").isoformat() if start else None
    names = [r.strip() for item in reviewers or [] for r in item.split(",") if r.strip()]
    with open_session(profile, server) as session:
        client = session.client()
        approval = client.create_approval(
            topics=topics,
            operations=operations_from(read, write, None),
            duration_seconds=duration,
            reason=reason,
            start_at=start_at,
            reviewers=names,
        )
        if fmt != "json":
            note(
                f"Requested approval [bold]{approval.get('id')}[/bold] for "
                f"{', '.join(topics)} ({', '.join(approval.get('operations', []))})."
            )
        if wait and approval.get("status") == "pending":
            approval = wait_for_decision(client, approval)
    report_decision(approval, fmt)


def approval_rows(approvals: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in ("ID", "STATUS", "REQUESTER", "TOPICS", "OPERATIONS", "WINDOW", "REASON"):
        table.add_column(column, no_wrap=column in ("GRANT", "ID"))
    for item in approvals:
        table.add_row(
            str(item.get("id", "")),
            str(item.get("status", "")),
            str(item.get("requester", "")),
            ",".join(map(str, item.get("topics", []))),
            ",".join(map(str, item.get("operations", []))),
            format_window(item.get("window_start"), item.get("window_end")),
            str(item.get("reason") or ""),
        )
    return table


@approvals_app.command("ls", epilog=help_epilog())
def list_approvals(
    reviewable: Annotated[
        bool,
        typer.Option("--reviewable", help="Requests you may review, not your own.", metavar=""),
    ] = False,
    profile: ProfileOpt = None,
    server: ServerOpt = None,
    output: OutputOpt = None,
) -> None:
    """List your approval requests, or with --reviewable the ones waiting for you."""
    fmt = check_output(output)
    with open_session(profile, server) as session:
        items = session.client().list_approvals("reviewable" if reviewable else "mine")
    if fmt == "json":
        print_json(items)
    elif not items:
        stdout.print("Nothing to review." if reviewable else "No approval requests.")
    else:
        stdout.print(approval_rows(items))


@approvals_app.command("show", epilog=help_epilog())
def show(
    approval_id: Annotated[str, typer.Argument(help="The approval id.", metavar="APPROVAL_ID")],
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait until it is decided.", metavar="")
    ] = False,
    profile: ProfileOpt = None,
    server: ServerOpt = None,
    output: OutputOpt = None,
) -> None:
    """Show one approval request with its reviews."""
    fmt = check_output(output)
    with open_session(profile, server) as session:
        client = session.client()
        approval = client.get_approval(approval_id)
        if wait and approval.get("status") == "pending":
            approval = wait_for_decision(client, approval)
    if wait:
        report_decision(approval, fmt)
    elif fmt == "json":
        print_json(approval)
    else:
        stdout.print(approval_rows([approval]))
        reviews = _reviews_text(approval)
        if reviews:
            stdout.print(f"reviews: {reviews}")


def _review(
    approval_id: str,
    decision: str,
    reason: str | None,
    profile: str | None,
    server: str | None,
    output: str | None,
) -> None:
    fmt = check_output(output)
    with open_session(profile, server) as session:
        approval = session.client().review_approval(approval_id, decision, reason)
    if fmt == "json":
        print_json(approval)
        return
    verb = "Approved" if decision == "approve" else "Denied"
    status = approval.get("status", "")
    suffix = "" if status in ("approved", "denied") else f" (request is still {status})"
    stdout.print(f"{verb} {approval_id}{suffix}.")


@approvals_app.command("approve", epilog=help_epilog())
def approve(
    approval_id: Annotated[str, typer.Argument(help="The approval id.", metavar="APPROVAL_ID")],
    reason: Annotated[
        str | None,
        typer.Option(
            "--reason",
            "-r",
            envvar="STREAMCTL_REASON",
            help="Why you approve (the requester sees it; required when the policy says so).",
            metavar="TEXT",
        ),
    ] = None,
    profile: ProfileOpt = None,
    server: ServerOpt = None,
    output: OutputOpt = None,
) -> None:
    """Approve someone else's request (you need the approver role for the topic)."""
    _review(approval_id, "approve", reason, profile, server, output)


@approvals_app.command("deny", epilog=help_epilog())
def deny(
    approval_id: Annotated[str, typer.Argument(help="The approval id.", metavar="APPROVAL_ID")],
    reason: Annotated[
        str,
        typer.Option(
            "--reason",
            "-r",
            envvar="STREAMCTL_REASON",
            help="Why it is denied (required; the requester sees it).",
            metavar="TEXT",
        ),
    ],
    profile: ProfileOpt = None,
    server: ServerOpt = None,
    output: OutputOpt = None,
) -> None:
    """Deny a request, saying why."""
    if not reason.strip():
        raise UsageProblem("--reason must say why the request is denied", code="usage")
    _review(approval_id, "deny", reason, profile, server, output)
