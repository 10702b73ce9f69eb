"""`streamctl sessions ls|show|play|sync` and `streamctl audit who-produced|who-consumed`.

Transcripts are read from the access server (never from local files), so what
is shown is what the server verified and stored.
"""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from streamctl.cli.common import (
    OutputOpt,
    ProfileOpt,
    ServerOpt,
    check_output,
    format_when,
    note,
    open_session,
    parse_time,
    print_json,
    stdout,
    to_epoch,
)
from streamctl.cli.exit_codes import UsageProblem, help_epilog

sessions_app = typer.Typer(
    help="Recorded tunnel sessions: list, show, replay, upload pending ones.",
    no_args_is_help=True,
    epilog=help_epilog(),
)
audit_app = typer.Typer(
    help="Answer who produced or consumed a given record.",
    no_args_is_help=True,
    epilog=help_epilog(),
)

#: Longest pause `play` makes between two events, whatever the recording says.
MAX_PAUSE_S = 5.0


@sessions_app.command("ls", epilog=help_epilog())
def list_sessions(
    subject: Annotated[
        str | None, typer.Option("--subject", help="Only this person or bot.", metavar="USER")
    ] = None,
    topic: Annotated[
        str | None, typer.Option("--topic", help="Only sessions on this topic.", metavar="TOPIC")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only sessions since: ISO 8601 or -24h.", metavar="TIME"),
    ] = None,
    profile: ProfileOpt = None,
    server: ServerOpt = None,
    output: OutputOpt = None,
) -> None:
    """List recorded sessions (yours, or everyone's if your role allows)."""
    fmt = check_output(output)
    since_iso = parse_time(since, what="--since").isoformat() if since else None
    with open_session(profile, server) as session:
        items = session.client().list_sessions(subject=subject, topic=topic, since=since_iso)
    if fmt == "json":
        print_json(items)
        return
    if not items:
        stdout.print("No sessions.")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("SESSION", "SUBJECT", "GRANT", "STARTED", "EVENTS", "SEALED"):
        table.add_column(column)
    for item in items:
        table.add_row(
            str(item.get("session_id") or item.get("id") or ""),
            str(item.get("subject") or ""),
            str(item.get("grant_id") or ""),
            format_when(item.get("started_at")),
            str(item.get("event_count", item.get("events", ""))),
            "yes" if item.get("sealed") else "no",
        )
    stdout.print(table)


@sessions_app.command("show", epilog=help_epilog())
def show(
    session_id: Annotated[str, typer.Argument(help="The session id.", metavar="SESSION_ID")],
    profile: ProfileOpt = None,
    server: ServerOpt = None,
    output: OutputOpt = None,
) -> None:
    """Show one session's details and its events."""
    fmt = check_output(output)
    with open_session(profile, server) as session:
        client = session.client()
        info = client.get_session(session_id)
        events = client.session_events(session_id)
    if fmt == "json":
        print_json({**info, "events": events})
        return
    for key in ("session_id", "subject", "grant_id", "started_at", "sealed"):
        if key in info:
            value = format_when(info[key]) if key == "started_at" else info[key]
            stdout.print(f"{key + ':':<12} {value}")
    stdout.print(f"{'events:':<12} {len(events)}")
    for event in events:
        stdout.print(escape(describe_event(event)))


def _api_label(event: dict[str, Any]) -> str:
    from streamctl.kafka.apis import api_name

    key = event.get("api_key")
    if isinstance(key, int):
        return f"{api_name(key)} v{event.get('api_version', '?')}"
    return "request"


def _offsets(event: dict[str, Any]) -> str:
    first, last = event.get("first_offset"), event.get("last_offset")
    if first is None:
        return ""
    return f" offset {first}" if first == last else f" offsets {first}-{last}"


def describe_event(event: dict[str, Any]) -> str:
    """One readable line per transcript event: when, which connection, what happened."""
    kind = str(event.get("type", "?"))
    conn = str(event.get("conn") or "")
    when = format_when(event.get("ts"))
    head = f"{when} #{event.get('seq', '?')} " + (f"[{conn}] " if conn else "")
    if kind == "request":
        verdict = "allowed" if event.get("allowed") else "REFUSED"
        topics = ",".join(map(str, event.get("topics") or []))
        text = f"{_api_label(event)} {event.get('operation', '')} {topics} {verdict}".replace(
            "  ", " "
        )
        if not event.get("allowed") and event.get("reason"):
            text += f": {event.get('reason')}"
        return head + text
    if kind == "produced":
        return head + (
            f"produced {event.get('record_count', '?')} record(s) to "
            f"{event.get('topic')}[{event.get('partition')}]{_offsets(event)}"
        )
    if kind == "fetched":
        masked = event.get("mask_counts") or {}
        fields = sum(v for k, v in masked.items() if k != "records_seen") if masked else 0
        extra = f", {fields} field(s) masked" if fields else ""
        return head + (
            f"fetched {event.get('record_count', '?')} record(s) from "
            f"{event.get('topic')}[{event.get('partition')}]{_offsets(event)}{extra}"
        )
    if kind == "session_start":
        who, grant = event.get("subject"), event.get("grant_id")
        return head + f"session started by {who} under grant {grant}"
    if kind == "session_end":
        return head + f"session ended ({event.get('reason', 'closed')})"
    if kind == "close":
        return head + f"connection closed ({event.get('reason', '')})"
    return head + kind


#: Colours that tell connections apart in `play`.
_CONNECTION_STYLES = ("cyan", "magenta", "green", "blue", "yellow")


@sessions_app.command("play", epilog=help_epilog())
def play(
    session_id: Annotated[str, typer.Argument(help="The session id.", metavar="SESSION_ID")],
    speed: Annotated[
        float,
        typer.Option(
            "--speed", help="Replay speed: 2 is twice as fast, 0 no waiting.", metavar="FACTOR"
        ),
    ] = 1.0,
    skip_idle: Annotated[
        bool,
        typer.Option("--skip-idle", help=f"Never pause more than {MAX_PAUSE_S:g}s.", metavar=""),
    ] = False,
    profile: ProfileOpt = None,
    server: ServerOpt = None,
) -> None:
    """Replay a session in the terminal with its timing, connection by connection."""
    if speed < 0:
        raise UsageProblem("--speed must be 0 or more", code="usage")
    with open_session(profile, server) as session:
        events = session.client().session_events(session_id)
    if not events:
        note(f"Session {session_id} has no events.")
        return
    previous: float | None = None
    styles: dict[str, str] = {}
    for event in sorted(events, key=lambda e: int(e.get("seq", 0))):
        ts = to_epoch(event.get("ts"))
        if previous is not None and ts is not None and speed > 0:
            pause = (ts - previous) / speed
            if skip_idle:
                pause = min(pause, MAX_PAUSE_S)
            if pause > 0:
                time.sleep(pause)
        previous = ts if ts is not None else previous
        line = escape(describe_event(event))
        conn = str(event.get("conn") or "")
        if conn:
            style = styles.setdefault(conn, _CONNECTION_STYLES[len(styles) % 5])
            line = f"[{style}]{line}[/{style}]"
        if event.get("type") == "request" and not event.get("allowed"):
            line = f"[bold red]{line}[/bold red]"
        stdout.print(line)
        sys.stdout.flush()


@sessions_app.command("sync", epilog=help_epilog())
def sync(
    profile: ProfileOpt = None,
    server: ServerOpt = None,
    output: OutputOpt = None,
) -> None:
    """Upload sessions left on this machine by a failed upload or a killed tunnel."""
    fmt = check_output(output)
    from streamctl.cli.transcripts import sync_spool

    with open_session(profile, server) as session:
        outcomes = sync_spool(session)
    if fmt == "json":
        print_json(outcomes)
        return
    if not outcomes:
        stdout.print("Nothing to upload.")
    for item in outcomes:
        state = "uploaded" if item["uploaded"] else f"kept ({item['error']})"
        sealed = "" if item["sealed"] else " [not sealed]"
        stdout.print(f"{item['session_id']}{sealed}: {state}")
    if any(not item["uploaded"] for item in outcomes):
        raise typer.Exit(1)


def _who(
    which: str,
    topic: str,
    partition: int,
    offset: int,
    profile: str | None,
    server: str | None,
    output: str | None,
) -> None:
    fmt = check_output(output)
    if partition < 0 or offset < 0:
        raise UsageProblem("PARTITION and OFFSET must be 0 or more", code="usage")
    with open_session(profile, server) as session:
        answer = session.client().audit(which, topic, partition, offset)
    if fmt == "json":
        print_json(answer)
        return
    matches = (
        answer.get("matches")
        or answer.get("results")
        or ([answer] if answer.get("subject") else [])
    )
    if not matches:
        stdout.print(f"No recorded session {which} {topic}[{partition}] offset {offset}.")
        return
    for match in matches:
        stdout.print(
            f"{topic}[{partition}]@{offset} {which} by [bold]{match.get('subject')}[/bold] "
            f"in session {match.get('session_id')} (grant {match.get('grant_id', '?')}, "
            f"{format_when(match.get('ts') or match.get('at'))})"
        )


PartitionArg = Annotated[int, typer.Argument(help="Partition number.")]
OffsetArg = Annotated[int, typer.Argument(help="Record offset.")]
TopicArg = Annotated[str, typer.Argument(help="Topic name.")]


@audit_app.command("who-produced", epilog=help_epilog())
def who_produced(
    topic: TopicArg,
    partition: PartitionArg,
    offset: OffsetArg,
    profile: ProfileOpt = None,
    server: ServerOpt = None,
    output: OutputOpt = None,
) -> None:
    """Which person or bot wrote the record at TOPIC PARTITION OFFSET, in which session."""
    _who("produced", topic, partition, offset, profile, server, output)


@audit_app.command("who-consumed", epilog=help_epilog())
def who_consumed(
    topic: TopicArg,
    partition: PartitionArg,
    offset: OffsetArg,
    profile: ProfileOpt = None,
    server: ServerOpt = None,
    output: OutputOpt = None,
) -> None:
    """Which people or bots read the record at TOPIC PARTITION OFFSET, in which sessions."""
    _who("consumed", topic, partition, offset, profile, server, output)
