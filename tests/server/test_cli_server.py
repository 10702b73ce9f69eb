"""`streamctl server init/rotate-key` and `streamctl policy check/explain` via the console script."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from typer.testing import CliRunner

from streamctl.cli.app import app
from streamctl.policy.document import load_policy
from streamctl.server.config import load_config
from streamctl.server.device_flow import verify_password
from streamctl.server.keys import KeyRing

EXE = str(Path(sys.executable).parent / "streamctl")


def _script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([EXE, *args], capture_output=True, text=True, env=full_env, timeout=120)


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str


def _run(*args: str, env: dict[str, str] | None = None) -> Outcome:
    """The same Typer app in-process (fast), with stdout and stderr kept apart."""
    result = CliRunner().invoke(app, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Outcome(result.exit_code, result.stdout, result.stderr)


def test_init_writes_a_working_private_starter(tmp_path: Path) -> None:
    folder = tmp_path / "srv"
    out = _script("server", "init", str(folder), env={"STREAMCTL_BOB_PASSWORD": "bob-from-env"})
    assert out.returncode == 0, out.stderr
    alice_line = next(line for line in out.stdout.splitlines() if line.startswith("dev user alice"))
    alice_password = alice_line.split("password ")[1].split()[0]
    assert "bob-from-env" not in out.stdout and "STREAMCTL_BOB_PASSWORD" in out.stdout
    config = load_config(folder / "server.yaml")
    assert config.users[0].username == "alice"
    assert verify_password(config.user("alice").password_hash, alice_password)  # type: ignore[union-attr]
    assert verify_password(config.user("bob").password_hash, "bob-from-env")  # type: ignore[union-attr]
    assert alice_password not in (folder / "server.yaml").read_text()
    assert stat.S_IMODE((folder / "server.yaml").stat().st_mode) == 0o600
    pems = list((folder / "keys").glob("*.pem"))
    assert len(pems) == 1 and stat.S_IMODE(pems[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((folder / "keys").stat().st_mode) == 0o700
    assert load_policy(folder / "policy.yaml").roles_of("bob") == ("approver",)
    again = _run("server", "init", str(folder))
    assert again.returncode == 1 and "already exists" in again.stderr


def test_rotate_key_keeps_the_old_public_key(tmp_path: Path) -> None:
    folder = tmp_path / "srv"
    assert _run("server", "init", str(folder)).returncode == 0
    ring = KeyRing(folder / "keys", keep_seconds=3600)
    old = ring.active()[0].kid
    out = _run("server", "rotate-key", "--config", str(folder / "server.yaml"))
    assert out.returncode == 0, out.stderr
    new = ring.active()[0].kid
    assert new != old and new in out.stdout
    assert {k["kid"] for k in ring.jwks()["keys"]} == {old, new}
    # once the retired key's tokens have all expired it leaves the JWKS and the disk
    expired = KeyRing(folder / "keys", keep_seconds=0)
    expired.create("ES256")
    assert old not in {k["kid"] for k in expired.jwks()["keys"]}
    assert not (folder / "keys" / f"{old}.pem").exists()


def test_policy_check_lists_problems_with_fields(tmp_path: Path) -> None:
    assert _run("server", "init", str(tmp_path / "srv")).returncode == 0
    good = _run("policy", "check", str(tmp_path / "srv" / "policy.yaml"))
    assert good.returncode == 0 and good.stdout.startswith("ok: ") and "2 role(s)" in good.stdout
    raw = yaml.safe_load((tmp_path / "srv" / "policy.yaml").read_text())
    raw["roles"]["engineer"]["grants"][0]["operations"] = ["fly"]
    raw["clusters"]["local"].pop("bootstrap")
    bad_path = tmp_path / "bad.yaml"
    bad_path.write_text(yaml.safe_dump(raw))
    bad = _run("policy", "check", str(bad_path))
    assert bad.returncode == 1
    lines = bad.stderr.strip().splitlines()
    assert f"error: {bad_path}: roles.engineer.grants[0].operations[0]: unknown operation 'fly'" in lines
    assert any("clusters.local.bootstrap: is required" in line for line in lines)


def test_policy_explain(tmp_path: Path) -> None:
    assert _run("server", "init", str(tmp_path / "srv")).returncode == 0
    policy = str(tmp_path / "srv" / "policy.yaml")
    ok = _run("policy", "explain", "--subject", "alice", "--topic", "orders", "--op", "read",
              "--policy", policy)
    assert ok.returncode == 0
    assert ok.stdout.startswith("allowed: roles.engineer.grants[0] allows read on orders")
    approval = _run("policy", "explain", "-s", "alice", "-t", "payments", "--op", "write",
                    "-p", policy, "-o", "json")
    body = json.loads(approval.stdout)
    assert body["allowed"] and body["needs_approval"] and body["classes"] == ["high-value"]
    refused = _run("policy", "explain", "-s", "alice", "-t", "audit-events", "--op", "delete",
                   "-p", policy)
    assert refused.returncode == 3 and "refused: audit-events is immutable" in refused.stdout


def test_server_run_refuses_a_bad_policy_naming_file_and_field(tmp_path: Path) -> None:
    folder = tmp_path / "srv"
    assert _run("server", "init", str(folder)).returncode == 0
    policy = folder / "policy.yaml"
    policy.write_text(policy.read_text().replace("classes: [immutable]", "classes: [frozen]"))
    out = _run("server", "run", "--config", str(folder / "server.yaml"), "--port", "0")
    assert out.returncode == 1
    assert f"{policy}: topic_classes[1].classes[0]: unknown topic class 'frozen'" in out.stderr
    assert "Traceback" not in out.stderr
