"""completions/ is generated from the Typer app: it must be current, and it must complete."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from streamctl.cli.completions import FILES, command_tree, render_all, stale_files

REPO = Path(__file__).resolve().parents[2]
COMPLETIONS = REPO / "completions"


def test_completion_files_are_up_to_date() -> None:
    stale = stale_files(COMPLETIONS)
    assert stale == [], f"stale completion files {stale}: run `make completions`"
    check = subprocess.run(
        [sys.executable, "-m", "streamctl.cli.completions", str(COMPLETIONS), "--check"],
        capture_output=True, cwd=REPO,
    )
    assert check.returncode == 0, check.stderr.decode()


def test_stale_check_notices_a_changed_file(tmp_path: Path) -> None:
    for name, content in render_all().items():
        (tmp_path / name).write_text(content)
    assert stale_files(tmp_path) == []
    (tmp_path / FILES["fish"]).write_text("# old\n")
    assert stale_files(tmp_path) == [FILES["fish"]]


def _bash_complete(*words: str) -> list[str]:
    """Ask the generated bash function what it offers after `streamctl WORDS...`."""
    line = " ".join(f"'{w}'" for w in ("streamctl", *words))
    script = (
        f"source '{COMPLETIONS / FILES['bash']}'\n"
        f"COMP_WORDS=({line}); COMP_CWORD={len(words)}\n"
        "_streamctl_completion\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(["bash", "-c", script], capture_output=True, check=True)
    return done.stdout.decode().split()


def test_bash_completes_commands_subcommands_and_options() -> None:
    top = _bash_complete("")
    for command in ("login", "logout", "whoami", "status", "connect", "grant", "request-approval",
                    "approvals", "tail", "produce", "sessions", "audit", "config"):
        assert command in top
    assert _bash_complete("grant", "re") == ["request", "revoke"]
    assert _bash_complete("approvals", "ls", "--re") == ["--reviewable"]
    assert _bash_complete("tail", "orders", "--from") == ["--from-beginning", "--from-time"]
    assert "--wait" in _bash_complete("request-approval", "payments", "--w")
    # Option values do not derail the path: `--profile prod` then a sub-command.
    assert _bash_complete("--debug", "audit", "who-") == ["who-consumed", "who-produced"]


def test_zsh_and_fish_scripts_cover_every_command() -> None:
    files = render_all()
    zsh, fish = files[FILES["zsh"]], files[FILES["fish"]]
    assert zsh.startswith("#compdef streamctl")
    for node in _all_nodes():
        if not node.path:
            continue
        name = node.path[-1]
        assert f"'{name}:" in zsh, name
        assert f"-a {name} " in fish, name
    assert "-l from-beginning" in fish and "'--from-beginning:" in zsh


def _all_nodes() -> list[object]:
    out = []
    stack = [command_tree()]
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(node.children)
    return out
