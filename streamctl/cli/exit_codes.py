"""The one table of exit codes every `streamctl` command uses, and the errors that map to them.

Scripts branch on these numbers, so they are part of the CLI's contract; the
same table is printed at the end of `streamctl --help`.
"""

from __future__ import annotations

from enum import IntEnum

from streamctl.client import errors


class ExitCode(IntEnum):
    """What a script can learn from `$?`."""

    OK = 0
    ERROR = 1
    USAGE = 2
    NOT_AUTHORIZED = 3
    NOT_LOGGED_IN = 4
    SERVER_UNREACHABLE = 5
    NOT_FOUND = 6
    DENIED_OR_EXPIRED = 7
    INTERRUPTED = 130


#: One line per code, in the words of the help epilog.
MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.ERROR: "error (the message says what failed)",
    ExitCode.USAGE: "usage error: bad command, option or value",
    ExitCode.NOT_AUTHORIZED: "not authorized, or an approval is needed first",
    ExitCode.NOT_LOGGED_IN: "not logged in, login expired, or login denied",
    ExitCode.SERVER_UNREACHABLE: "access server or identity provider unreachable",
    ExitCode.NOT_FOUND: "no such grant, approval, session or record",
    ExitCode.DENIED_OR_EXPIRED: "approval denied or expired, or grant expired",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}

#: Most specific class first: the first isinstance match wins.
_BY_ERROR: tuple[tuple[type[errors.ClientError], ExitCode], ...] = (
    (errors.ServerUnreachable, ExitCode.SERVER_UNREACHABLE),
    (errors.DeviceFlowDenied, ExitCode.NOT_LOGGED_IN),
    (errors.DeviceFlowExpired, ExitCode.NOT_LOGGED_IN),
    (errors.NotLoggedIn, ExitCode.NOT_LOGGED_IN),
    (errors.NotAuthorized, ExitCode.NOT_AUTHORIZED),
    (errors.NotFound, ExitCode.NOT_FOUND),
    (errors.GrantInvalid, ExitCode.DENIED_OR_EXPIRED),
)


class ApprovalNotGranted(errors.ClientError):
    """An approval the user waited for ended denied or expired."""


class UsageProblem(errors.ClientError):
    """A value the option parser accepted but the command cannot use (a bad duration, say)."""


def exit_code_for(exc: errors.ClientError) -> ExitCode:
    """The documented exit code for an expected failure."""
    if isinstance(exc, UsageProblem) or exc.code == "usage":
        return ExitCode.USAGE
    if isinstance(exc, ApprovalNotGranted):
        return ExitCode.DENIED_OR_EXPIRED
    for cls, code in _BY_ERROR:
        if isinstance(exc, cls):
            return code
    return ExitCode.ERROR


#: Short forms for the one-paragraph epilog of each command's help.
SHORT: dict[ExitCode, str] = {
    ExitCode.OK: "ok",
    ExitCode.ERROR: "error",
    ExitCode.USAGE: "usage",
    ExitCode.NOT_AUTHORIZED: "not authorized / needs approval",
    ExitCode.NOT_LOGGED_IN: "not logged in / expired",
    ExitCode.SERVER_UNREACHABLE: "server unreachable",
    ExitCode.NOT_FOUND: "not found",
    ExitCode.DENIED_OR_EXPIRED: "denied / expired",
    ExitCode.INTERRUPTED: "interrupted",
}


def help_epilog(full: bool = False) -> str:
    """The exit codes as they appear at the end of `--help` (the full table on the root)."""
    if full:
        rows = "\n\n".join(f"{int(code):>3}  {MEANINGS[code]}" for code in ExitCode)
        return f"Exit codes:\n\n{rows}"
    return "Exit codes: " + ", ".join(f"{int(c)} {SHORT[c]}" for c in ExitCode) + "."
