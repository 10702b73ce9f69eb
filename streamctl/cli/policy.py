"""`streamctl policy ...`: validate a policy file and explain a decision."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from streamctl.policy.document import PolicyError, load_policy

policy_app = typer.Typer(
    name="policy",
    help="Check a policy file, or ask why an operation is allowed or refused.",
    no_args_is_help=True,
)


@policy_app.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="The policy file to validate.", dir_okay=False)],
) -> None:
    """Validate a policy file; every problem is listed with its field. Exit 1 when invalid."""
    try:
        doc = load_policy(file)
    except PolicyError as exc:
        for problem in exc.problems:
            typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(
        f"ok: {file}: {len(doc.roles)} role(s), {len(doc.topic_classes)} topic class rule(s), "
        f"{len(doc.masking)} masking rule(s), {len(doc.clusters)} cluster(s)"
    )


@policy_app.command("explain")
def explain(
    subject: Annotated[str, typer.Option("--subject", "-s", help="User or service name.")],
    topic: Annotated[str, typer.Option("--topic", "-t", help="Topic name (or pattern).")],
    op: Annotated[str, typer.Option("--op", help="read, write, create, delete, alter, describe.")],
    policy: Annotated[
        Path,
        typer.Option(
            "--policy", "-p", envvar="STREAMCTL_POLICY", help="The policy file.", dir_okay=False
        ),
    ] = Path("policy.yaml"),
    role: Annotated[
        list[str] | None,
        typer.Option("--role", help="Also assume this role (e.g. mapped from an IdP claim)."),
    ] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table or json.")] = "table",
) -> None:
    """Say which rule allows or refuses OP on TOPIC for SUBJECT, and why. Exit 3 when refused."""
    try:
        doc = load_policy(policy)
    except PolicyError as exc:
        for problem in exc.problems:
            typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(1) from exc
    result = doc.explain(subject, topic, op, role or ())
    if output == "json":
        typer.echo(
            json.dumps(
                {
                    "allowed": result.allowed,
                    "needs_approval": result.needs_approval,
                    "rule": result.rule,
                    "reason": result.reason,
                    "roles": list(result.roles),
                    "classes": sorted(c.value for c in result.classes),
                    "max_ttl_seconds": result.max_ttl_seconds,
                }
            )
        )
    else:
        verdict = "allowed" if result.allowed else "refused"
        if result.needs_approval:
            verdict = "allowed with an approval"
        typer.echo(f"{verdict}: {result.reason}")
        typer.echo(f"roles: {', '.join(result.roles) or '(none)'}")
        if result.classes:
            typer.echo(f"topic classes: {', '.join(sorted(c.value for c in result.classes))}")
        if result.max_ttl_seconds:
            typer.echo(f"longest grant: {result.max_ttl_seconds} s")
    if not result.allowed:
        raise typer.Exit(3)
