"""`streamctl tail` and `streamctl produce`: read and write records through a local tunnel.

Both open a tunnel under a fresh grant, so the grant, approvals, masking and
transcripts apply exactly as for any other client; the Kafka client used here
is kafka-python.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Annotated, Any

import typer
from rich.markup import escape

from streamctl.cli.common import (
    OutputOpt,
    ProfileOpt,
    ReasonOpt,
    ServerOpt,
    check_output,
    note,
    open_session,
    parse_time,
    stdout,
)
from streamctl.cli.exit_codes import UsageProblem
from streamctl.cli.grant_session import local_tunnel, obtain_grant, upload_pending
from streamctl.cli.grants import ApprovalOpt, TtlOpt
from streamctl.client.errors import ClientError, NotAuthorized, NotFound
from streamctl.client.grant_verify import seconds_left

#: Without a start option, tail shows this many latest records per partition.
DEFAULT_TAIL = 10
#: How long a poll may wait for records before checking whether we are done.
POLL_MS = 500

TailOutputOpt = Annotated[
    str | None,
    typer.Option(
        "--output",
        "-o",
        envvar="STREAMCTL_OUTPUT",
        help="Output format: table, json or raw (the values only).",
        show_default=False,
        metavar="FORMAT",
    ),
]
PartitionOpt = Annotated[
    int | None, typer.Option("--partition", "-P", help="Only this partition.", metavar="N")
]


def _kafka_failure(exc: Exception, topic: str) -> ClientError:
    """Turn a kafka-python error from the tunnel into a typed, one-line failure."""
    from kafka import errors as kerr

    if isinstance(
        exc,
        kerr.TopicAuthorizationFailedError
        | kerr.PolicyViolationError
        | kerr.ClusterAuthorizationFailedError
        | kerr.GroupAuthorizationFailedError,
    ):
        return NotAuthorized(
            f"the tunnel refused access to {topic}: {type(exc).__name__}",
            hint="check the grant's topics and operations with `streamctl grant ls`",
        )
    if isinstance(exc, kerr.UnknownTopicOrPartitionError):
        return NotFound(f"topic {topic} does not exist (or is not in the grant)")
    return ClientError(f"Kafka client error on {topic}: {type(exc).__name__}: {exc}")


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", errors="replace")


def _value_obj(raw: bytes | None) -> Any:
    """JSON values stay structured in JSON output; everything else is text."""
    text = _text(raw)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def record_dict(message: Any) -> dict[str, Any]:
    return {
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "timestamp": message.timestamp,
        "key": _text(message.key),
        "headers": {k: _text(v) for k, v in (message.headers or [])},
        "value": _value_obj(message.value),
    }


def _print_record(
    message: Any, fmt: str, print_keys: bool, print_headers: bool, print_timestamps: bool
) -> None:
    if fmt == "raw":
        sys.stdout.buffer.write((message.value or b"") + b"\n")
        sys.stdout.flush()
        return
    if fmt == "json":
        data = record_dict(message)
        if sys.stdout.isatty():
            stdout.print_json(json.dumps(data))
        else:
            sys.stdout.write(json.dumps(data, sort_keys=True) + "\n")
            sys.stdout.flush()
        return
    prefix = f"[dim]{message.partition}:{message.offset}[/dim]"
    if print_timestamps:
        prefix += f" [dim]ts={message.timestamp}[/dim]"
    if print_keys:
        prefix += f" [cyan]key={escape(str(_text(message.key)))}[/cyan]"
    if print_headers and message.headers:
        hdrs = ",".join(f"{k}={_text(v)}" for k, v in message.headers)
        prefix += f" [magenta]headers={escape(hdrs)}[/magenta]"
    value = _value_obj(message.value)
    if isinstance(value, dict | list) and sys.stdout.isatty():
        stdout.print(prefix)
        stdout.print_json(json.dumps(value))
    else:
        shown = json.dumps(value) if isinstance(value, dict | list) else str(value)
        stdout.print(f"{prefix} {escape(shown)}")


def tail(
    topic: Annotated[str, typer.Argument(help="Topic to read.", metavar="TOPIC")],
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Start at the oldest record.", metavar="")
    ] = False,
    offset: Annotated[
        int | None,
        typer.Option(
            "--offset", help="Start at this offset (negative: that many from the end).", metavar="N"
        ),
    ] = None,
    from_time: Annotated[
        str | None,
        typer.Option(
            "--from-time", help="Start at this time: ISO 8601 or relative (-15m).", metavar="TIME"
        ),
    ] = None,
    partition: PartitionOpt = None,
    max_messages: Annotated[
        int | None,
        typer.Option("--max-messages", "-c", help="Stop after this many records.", metavar="N"),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep waiting for new records.", metavar="")
    ] = False,
    print_keys: Annotated[
        bool, typer.Option("--print-keys", help="Show record keys.", metavar="")
    ] = False,
    print_headers: Annotated[
        bool, typer.Option("--print-headers", help="Show record headers.", metavar="")
    ] = False,
    print_timestamps: Annotated[
        bool, typer.Option("--print-timestamps", help="Show record timestamps.", metavar="")
    ] = False,
    ttl: TtlOpt = None,
    reason: ReasonOpt = None,
    profile: ProfileOpt = None,
    server: ServerOpt = None,
    output: TailOutputOpt = None,
) -> None:
    """Print records of a topic, masked by policy (the last 10 per partition by default).

    Output is a table, JSON (`-o json`: pretty on a terminal, one object per
    line when piped) or the raw values (`-o raw`).
    """
    fmt = check_output(output, ("table", "json", "raw"))
    starts = [from_beginning, offset is not None, from_time is not None]
    if sum(starts) > 1:
        raise UsageProblem(
            "use only one of --from-beginning, --offset and --from-time", code="usage"
        )
    if max_messages is not None and max_messages < 1:
        raise UsageProblem("--max-messages must be at least 1", code="usage")
    start_ms = (
        int(parse_time(from_time, what="--from-time").timestamp() * 1000) if from_time else None
    )
    from streamctl.cli.common import parse_duration

    ttl_seconds = parse_duration(ttl, what="--ttl") if ttl else None
    with open_session(profile, server) as session:
        issued = obtain_grant(
            session,
            topics=[topic],
            operations=["read"],
            ttl_seconds=ttl_seconds,
            reason=reason,
        )
        upload_pending(session)
        with local_tunnel(session, issued) as running:
            count = 0
            try:
                for message in _consume(
                    running.bootstrap,
                    topic,
                    partition=partition,
                    from_beginning=from_beginning,
                    offset=offset,
                    start_ms=start_ms,
                    follow=follow,
                    deadline=time.time() + seconds_left(issued.grant),
                ):
                    _print_record(message, fmt, print_keys, print_headers, print_timestamps)
                    count += 1
                    if max_messages is not None and count >= max_messages:
                        break
            except KeyboardInterrupt:
                pass
            if fmt == "table" and count == 0:
                note(f"No records in {topic} from the chosen position.")


def _consume(
    bootstrap: str,
    topic: str,
    *,
    partition: int | None,
    from_beginning: bool,
    offset: int | None,
    start_ms: int | None,
    follow: bool,
    deadline: float,
) -> Iterator[Any]:
    """Assign partitions, seek to the start, and yield records until the end (or forever)."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka import errors as kerr

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id="streamctl-tail",
        group_id=None,
        enable_auto_commit=False,
        request_timeout_ms=30000,
    )
    try:
        try:
            ids = consumer.partitions_for_topic(topic)
            if not ids:
                raise _kafka_failure(kerr.UnknownTopicOrPartitionError(), topic)
            if partition is not None and partition not in ids:
                raise NotFound(
                    f"topic {topic} has no partition {partition}",
                    hint=f"partitions are {sorted(ids)}",
                )
            tps = [
                TopicPartition(topic, p) for p in sorted(ids) if partition is None or p == partition
            ]
            consumer.assign(tps)
            ends = consumer.end_offsets(tps)
            begins = consumer.beginning_offsets(tps)
            if start_ms is not None:
                found = consumer.offsets_for_times({tp: start_ms for tp in tps})
            for tp in tps:
                if from_beginning:
                    position = begins[tp]
                elif offset is not None:
                    position = offset if offset >= 0 else ends[tp] + offset
                elif start_ms is not None:
                    hit = found.get(tp)
                    position = hit.offset if hit is not None else ends[tp]
                else:
                    position = ends[tp] - DEFAULT_TAIL
                consumer.seek(tp, max(begins[tp], min(position, ends[tp])))
            pending = {tp for tp in tps if consumer.position(tp) < ends[tp]}
            while follow or pending:
                if time.time() >= deadline:
                    note("The grant expired; stopping.")
                    return
                batch = consumer.poll(timeout_ms=POLL_MS)
                for tp, messages in batch.items():
                    yield from messages
                    if tp in pending and consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
                for tp in list(pending):
                    if consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
        except kerr.KafkaError as exc:
            raise _kafka_failure(exc, topic) from exc
    finally:
        consumer.close()


def _lines(source: Iterable[bytes]) -> Iterator[bytes]:
    for line in source:
        stripped = line.rstrip(b"\r\n")
        if stripped:
            yield stripped


def _send_all(
    bootstrap: str,
    topic: str,
    source: Iterable[bytes],
    key_separator: str | None,
    headers: list[tuple[str, bytes]],
    partition: int | None,
) -> list[dict[str, Any]]:
    """Produce every line (acks=all) and return where each record landed."""
    from kafka import KafkaProducer
    from kafka import errors as kerr

    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        client_id="streamctl-produce",
        acks="all",
        request_timeout_ms=30000,
        retries=0,
    )
    sep = key_separator.encode() if key_separator else None
    results: list[dict[str, Any]] = []
    try:
        futures = []
        for line in _lines(source):
            key: bytes | None = None
            value: bytes = line
            if sep is not None and sep in line:
                key, value = line.split(sep, 1)
            futures.append(
                producer.send(topic, value=value, key=key, headers=headers, partition=partition)
            )
        producer.flush(timeout=60)
        for future in futures:
            meta = future.get(timeout=60)
            results.append({"topic": topic, "partition": meta.partition, "offset": meta.offset})
    except kerr.KafkaError as exc:
        raise _kafka_failure(exc, topic) from exc
    finally:
        producer.close(timeout=10)
    return results


def produce(
    topic: Annotated[str, typer.Argument(help="Topic to write to.", metavar="TOPIC")],
    file: Annotated[
        str | None,
        typer.Option(
            "--file", help="Read records from this file (default: stdin).", metavar="FILE"
        ),
    ] = None,
    key_separator: Annotated[
        str | None,
        typer.Option(
            "--key-separator",
            "-K",
            help="Split each line into key and value at the first occurrence.",
            metavar="SEP",
        ),
    ] = None,
    header: Annotated[
        list[str] | None,
        typer.Option(
            "--header",
            "-H",
            help="Header KEY=VALUE on every record (repeatable).",
            metavar="KEY=VALUE",
        ),
    ] = None,
    partition: Annotated[
        int | None,
        typer.Option(
            "--partition", "-P", help="Write every record to this partition.", metavar="N"
        ),
    ] = None,
    ttl: TtlOpt = None,
    reason: ReasonOpt = None,
    approval: ApprovalOpt = None,
    profile: ProfileOpt = None,
    server: ServerOpt = None,
    output: OutputOpt = None,
) -> None:
    """Write records, one per line, from stdin or a file, through the tunnel.

    Writes to high-value topics need an approved request-approval first.
    """
    fmt = check_output(output)
    headers: list[tuple[str, bytes]] = []
    for item in header or []:
        name, equals, header_value = item.partition("=")
        if not equals or not name:
            raise UsageProblem(f"--header {item!r} must look like KEY=VALUE", code="usage")
        headers.append((name, header_value.encode()))
    if key_separator == "":
        raise UsageProblem("--key-separator cannot be empty", code="usage")
    try:
        source = open(file, "rb") if file else sys.stdin.buffer
    except OSError as exc:
        raise UsageProblem(f"cannot read {file}: {exc.strerror}", code="usage") from exc
    from streamctl.cli.common import parse_duration

    ttl_seconds = parse_duration(ttl, what="--ttl") if ttl else None
    session = open_session(profile, server)
    try:
        issued = obtain_grant(
            session,
            topics=[topic],
            operations=["write"],
            ttl_seconds=ttl_seconds,
            reason=reason,
            approval_id=approval,
        )
        upload_pending(session)
        with local_tunnel(session, issued) as running:
            results = _send_all(running.bootstrap, topic, source, key_separator, headers, partition)
    finally:
        session.close()
        if file:
            source.close()
    if fmt == "json":
        from streamctl.cli.common import print_json

        print_json(results)
    else:
        stdout.print(f"Produced {len(results)} record(s) to {topic}.")
