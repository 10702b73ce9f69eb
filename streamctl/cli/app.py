"""The root Typer app: global options, the registry of sub-commands, and error reporting.

Expected failures (typed client errors) become one line on stderr saying what
to do next, with the exit code from `streamctl.cli.exit_codes`; tracebacks are
only shown with --debug (or STREAMCTL_DEBUG=1).
"""

from __future__ import annotations

import os
import sys
import traceback

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
from typer.exceptions import Abort

from streamctl import __version__
from streamctl.cli import approvals, config_cmd, connect, grants, login, records, sessions
from streamctl.cli.exit_codes import ExitCode, exit_code_for, help_epilog
from streamctl.cli.policy import policy_app
from streamctl.cli.server import server_app
from streamctl.client.errors import ClientError

HELP = """Scoped, time-boxed, audited access to Apache Kafka.

Start with `streamctl login --server URL`, then `streamctl connect TOPIC --read`.

Every option can also be set in the environment: STREAMCTL_SERVER, STREAMCTL_PROFILE, \
STREAMCTL_OUTPUT, STREAMCTL_REASON... and STREAMCTL_<COMMAND>_<OPTION> for the rest \
(for example STREAMCTL_TAIL_MAX_MESSAGES=10)."""

app = typer.Typer(
    name="streamctl",
    help=HELP,
    epilog=help_epilog(full=True),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    # Every option can also come from STREAMCTL_<COMMAND>_<OPTION>, e.g. STREAMCTL_TAIL_FOLLOW=1;
    # the common ones have short names (STREAMCTL_SERVER, STREAMCTL_PROFILE, STREAMCTL_OUTPUT).
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "STREAMCTL"},
)

_debug = False


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
        metavar="",
        allow_from_autoenv=False,
    ),
    debug: bool = typer.Option(
        False,
        "--debug",
        envvar="STREAMCTL_DEBUG",
        help="Show tracebacks for failures.",
        metavar="",
    ),
) -> None:
    """Scoped, time-boxed, audited access to Apache Kafka."""
    global _debug
    _debug = debug


EPILOG = help_epilog()
# -- identity ---------------------------------------------------------------------------------
app.command("login", epilog=EPILOG)(login.login)
app.command("logout", epilog=EPILOG)(login.logout)
app.command("whoami", epilog=EPILOG)(login.whoami)
app.command("status", epilog=EPILOG)(login.status)
# -- access -----------------------------------------------------------------------------------
app.command("connect", epilog=EPILOG)(connect.connect)
app.add_typer(grants.grant_app, name="grant")
app.command("request-approval", epilog=EPILOG)(approvals.request_approval)
app.add_typer(approvals.approvals_app, name="approvals")
# -- data -------------------------------------------------------------------------------------
app.command("tail", epilog=EPILOG)(records.tail)
app.command("produce", epilog=EPILOG)(records.produce)
# -- audit ------------------------------------------------------------------------------------
app.add_typer(sessions.sessions_app, name="sessions")
app.add_typer(sessions.audit_app, name="audit")
# -- settings ---------------------------------------------------------------------------------
app.add_typer(config_cmd.config_app, name="config")
app.add_typer(server_app, name="server")
app.add_typer(policy_app, name="policy")


def _debug_wanted() -> bool:
    return _debug or os.environ.get("STREAMCTL_DEBUG", "").lower() in ("1", "true", "yes")


def _fail(message: str, hint: str | None, code: int) -> None:
    line = f"error: {message}"
    if hint:
        if hint.startswith("streamctl "):
            command, _, comment = hint.partition("#")
            line += f"; run `{command.strip()}`" + (f" ({comment.strip()})" if comment else "")
        else:
            line += f"; {hint}"
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    sys.exit(code)


def _usage_line(exc: ClickException) -> str:
    """A usage error in one line, naming the help to read."""
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else "streamctl"
    return f"error: {exc.format_message().rstrip('.')}; see `{command} --help`"


def main() -> None:
    """Console-script entry point: run the app, turning expected failures into one line."""
    try:
        rc = app(standalone_mode=False)
    except NoArgsIsHelpError as exc:
        sys.stdout.write(exc.format_message() + "\n")
        sys.exit(int(ExitCode.USAGE))
    except ClickException as exc:
        if _debug_wanted():
            traceback.print_exc()
        sys.stderr.write(_usage_line(exc) + "\n")
        sys.exit(exc.exit_code if isinstance(exc, UsageError) else int(ExitCode.ERROR))
    except ClientError as exc:
        if _debug_wanted():
            traceback.print_exc()
        _fail(exc.message, exc.hint, int(exit_code_for(exc)))
    except (KeyboardInterrupt, Abort):
        sys.stderr.write("interrupted\n")
        sys.exit(int(ExitCode.INTERRUPTED))
    except BrokenPipeError:
        sys.exit(int(ExitCode.OK))
    except Exception as exc:
        if _debug_wanted():
            traceback.print_exc()
        _fail(
            f"unexpected {type(exc).__name__}: {exc}",
            "run again with --debug for details, and report it if it persists",
            int(ExitCode.ERROR),
        )
    sys.exit(rc if isinstance(rc, int) else int(ExitCode.OK))
