"""The root Typer app: global options and the registry of sub-commands."""

from __future__ import annotations

import typer

from streamctl import __version__
from streamctl.cli.policy import policy_app
from streamctl.cli.server import server_app

app = typer.Typer(
    name="streamctl",
    help="Scoped, time-boxed, audited access to Apache Kafka.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"streamctl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    """Scoped, time-boxed, audited access to Apache Kafka."""


app.add_typer(server_app, name="server")
app.add_typer(policy_app, name="policy")


def main() -> None:
    """Console-script entry point."""
    app()
