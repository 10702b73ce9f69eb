"""The documentation matches the code: runnable README blocks run, every field is documented.

- Every ```sh block of README.md and docs/*.md runs as written with bash, in order, in one
  empty folder (so a later block can use what an earlier one made), with .venv/bin on PATH.
- The starter policy shown in the README is exactly what `streamctl server init` writes.
- Every policy field and every server.yaml field the code reads is named in the docs, with
  the code's defaults; the docs' YAML examples load with the real validators.
- docs/api.md is what scripts/gen_api_docs.py renders from the app's OpenAPI document.
- Every `streamctl <command>` in the docs' code exists (its `--help` runs) and every option
  written after it is one the command has.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import inspect
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import typer.main
import yaml

from streamctl.cli.app import app
from streamctl.cli.exit_codes import MEANINGS, ExitCode
from streamctl.kafka.operations import GRANTABLE
from streamctl.policy import document
from streamctl.policy.document import (
    MASKING_DETECTORS,
    MASKING_STRATEGIES,
    MASKING_TARGETS,
    SASL_MECHANISMS,
    SECURITY_PROTOCOLS,
    ApprovalSettings,
    ClusterConfig,
    PolicyDocument,
    RoleRule,
    load_policy,
)
from streamctl.policy.grant import MaskingRule, TopicClass
from streamctl.server import config as server_config
from streamctl.server import retention, webhooks
from streamctl.server.starter import STARTER_POLICY

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = REPO / "docs"
BIN = Path(sys.executable).parent
FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```$", re.M | re.S)
#: Fence languages the docs may use: `sh` runs in the test, the others are shown only.
LANGUAGES = {"sh", "console", "text", "yaml", "python", "properties"}


def doc_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def fenced(path: Path) -> list[tuple[str, str]]:
    """(language, body) of every fenced block, in order."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(path.read_text(encoding="utf-8"))]


def clean_env(home: Path) -> dict[str, str]:
    """The environment of a reader in a fresh shell: no profile, no keyring, our venv first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMCTL_")}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        HOME=str(home),
        STREAMCTL_CONFIG_DIR=str(home / "config"),
        STREAMCTL_DATA_DIR=str(home / "data"),
        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
        COLUMNS="100",
    )
    return env


# -- runnable blocks ---------------------------------------------------------------------------


def test_fences_are_marked_runnable_or_illustrative() -> None:
    readme = README.read_text(encoding="utf-8")
    assert "illustrative" in readme, "the README must say which blocks are illustrative"
    for path in doc_files():
        for language, _ in fenced(path):
            assert language in LANGUAGES, f"{path.name}: unmarked or unknown fence {language!r}"
    assert sum(1 for lang, _ in fenced(README) if lang == "sh") >= 3


def test_sh_blocks_run_as_written(tmp_path: Path) -> None:
    workdir = tmp_path / "reader"
    workdir.mkdir()
    env = clean_env(tmp_path / "home")
    ran = 0
    for path in doc_files():
        for language, body in fenced(path):
            if language != "sh":
                continue
            proc = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", body],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert proc.returncode == 0, (
                f"{path.name} block failed ({proc.returncode}):\n{body}\n{proc.stdout}{proc.stderr}"
            )
            ran += 1
    assert ran >= 3
    # the blocks did what the README says: a starter server folder with a valid policy
    assert (workdir / "my-server" / "server.yaml").stat().st_mode & 0o777 == 0o600
    assert load_policy(workdir / "my-server" / "policy.yaml").default_cluster == "local"


def test_readme_shows_the_real_starter_policy() -> None:
    readme = README.read_text(encoding="utf-8")
    marker = readme.index("<!-- starter-policy")
    language, body = next(
        (m.group(1), m.group(2)) for m in FENCE.finditer(readme) if m.start() > marker
    )
    assert language == "yaml"
    assert body == STARTER_POLICY


# -- fields and defaults -----------------------------------------------------------------------


def table_rows(text: str) -> dict[str, list[str]]:
    """Markdown table rows keyed by every `name` in their first cell."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        first = line.split(" | ", 1)[0]
        for name in re.findall(r"`([^`]+)`", first):
            rows.setdefault(name, []).append(line)
    return rows


def renderings(value: Any) -> set[str]:
    """Ways a default may be written in a docs table."""
    if isinstance(value, bool):
        return {f"`{str(value).lower()}`"}
    if isinstance(value, float) and value.is_integer():
        return {f"`{value}`", f"`{int(value)}`"}
    if isinstance(value, tuple):
        items = [str(v) for v in value]
        return {f"`{json.dumps(items)}`", f"`[{', '.join(items)}]`"}
    return {f"`{value}`"}


def assert_defaults(
    text: str, cls: type, page: str, keys: dict[str, str] | None = None, skip: tuple[str, ...] = ()
) -> int:
    """Each dataclass field with a plain default has a row (by its YAML key) showing it."""
    rows = table_rows(text)
    checked = 0
    for f in dataclasses.fields(cls):
        if f.name in skip or f.default is dataclasses.MISSING:
            continue
        if not isinstance(f.default, bool | int | float | str | tuple):
            continue
        if f.default is None:
            continue
        key = (keys or {}).get(f.name, f.name)
        found = rows.get(key, [])
        assert found, f"{page}: no table row for `{key}` ({cls.__name__}.{f.name})"
        wanted = renderings(f.default)
        assert any(w in row for row in found for w in wanted), (
            f"{page}: the row for `{key}` does not show the default {wanted} of "
            f"{cls.__name__}.{f.name}: {found}"
        )
        checked += 1
    return checked


def policy_yaml_keys() -> set[str]:
    """Every field name the policy reader accepts, read from its source (so new ones count)."""
    tree = ast.parse(Path(inspect.getfile(document)).read_text(encoding="utf-8"))
    assigned = {
        target.id: node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    keys: set[str] = set()
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "mapping"
            and len(node.args) >= 3
        ):
            continue
        allowed: ast.expr | None = node.args[2]
        if isinstance(allowed, ast.Name):
            allowed = assigned.get(allowed.id)
        if isinstance(allowed, ast.Tuple | ast.List):
            keys |= {
                e.value
                for e in allowed.elts
                if isinstance(e, ast.Constant) and isinstance(e.value, str)
            }
    return keys


def test_every_policy_field_and_value_is_documented() -> None:
    text = (DOCS / "policy.md").read_text(encoding="utf-8")
    keys = policy_yaml_keys()
    assert {"version", "roles", "members", "keep_last", "tls_ca_file"} <= keys, keys
    assert set(document.TOP_LEVEL) <= keys
    missing = sorted(k for k in keys if f"`{k}`" not in text)
    assert not missing, f"docs/policy.md does not name these policy fields: {missing}"
    values = [
        *MASKING_STRATEGIES,
        *MASKING_DETECTORS,
        *MASKING_TARGETS,
        *SECURITY_PROTOCOLS,
        *SASL_MECHANISMS,
        *(c.value for c in TopicClass),
        *(o.value for o in GRANTABLE),
    ]
    missing = sorted(v for v in values if f"`{v}`" not in text)
    assert not missing, f"docs/policy.md does not name these values: {missing}"


def test_policy_defaults_match_the_code() -> None:
    text = (DOCS / "policy.md").read_text(encoding="utf-8")
    page = "docs/policy.md"
    checked = assert_defaults(text, ApprovalSettings, page)
    checked += assert_defaults(text, RoleRule, page, skip=("where",))
    checked += assert_defaults(text, MaskingRule, page, skip=("name",))
    checked += assert_defaults(text, ClusterConfig, page)
    checked += assert_defaults(
        text,
        PolicyDocument,
        page,
        keys={"default_ttl_seconds": "default_seconds", "max_ttl_seconds": "max_seconds"},
    )
    assert checked >= 10


def test_policy_examples_load(tmp_path: Path) -> None:
    """The YAML examples of docs/policy.md, put together, are one valid policy."""
    from streamctl.masking.rules import compile_rules

    blocks = [body for lang, body in fenced(DOCS / "policy.md") if lang == "yaml"]
    (tmp_path / "policy.yaml").write_text("\n".join(blocks), encoding="utf-8")
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "prod-ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    policy = load_policy(tmp_path / "policy.yaml")
    assert set(policy.clusters) == {"local", "prod"}
    compiled = {r.name: r for r in compile_rules(policy.masking, hash_key=b"k" * 32)}
    assert set(compiled) == {r.name for r in policy.masking}
    # the policy's detector names reach the masking package's detectors
    assert {d.name for d in compiled["pii-anywhere"].detectors} >= {"email", "us_ssn", "phone"}
    assert len(compiled["employee-ids"].detectors) == 1  # the rule's pattern


def server_yaml_keys() -> set[str]:
    """Keys parse_config and the section readers take, from their source."""
    keys: set[str] = set()
    for module, functions in (
        (server_config, ("parse_config",)),
        (webhooks, ("load_webhook_settings",)),
    ):
        tree = ast.parse(Path(inspect.getfile(module)).read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if not (isinstance(fn, ast.FunctionDef) and fn.name in functions):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute):
                    name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
                    position = {"_opt": 1, "_req": 1, "get": 0}.get(name)
                    if position is not None and len(node.args) > position:
                        arg = node.args[position]
                        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                            keys.add(arg.value)
                if isinstance(node, ast.Tuple) and len(node.elts) == 2:
                    first = node.elts[0]
                    if isinstance(first, ast.Constant) and str(first.value).endswith("_seconds"):
                        keys.add(first.value)
    return keys


def section_names() -> set[str]:
    """Top-level server.yaml sections read by server extensions (`read_section(path, name)`)."""
    names: set[str] = set()
    server_dir = Path(inspect.getfile(server_config)).parent
    for source in server_dir.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "read_section"
                and len(node.args) == 2
                and isinstance(node.args[1], ast.Constant)
            ):
                names.add(str(node.args[1].value))
    return names


def test_every_server_setting_is_documented() -> None:
    text = (DOCS / "deployment.md").read_text(encoding="utf-8")
    fields = {
        f.name
        for cls in (
            server_config.ServerConfig,
            server_config.DevUser,
            server_config.ServiceIdentity,
            server_config.ExternalIssuer,
            retention.RetentionSettings,
        )
        for f in dataclasses.fields(cls)
    } - {"path"}
    fields |= server_yaml_keys() | section_names()
    assert {"issuer_url", "role_map", "max_attempts", "webhooks", "retention"} <= fields, fields
    missing = sorted(k for k in fields if f"`{k}`" not in text)
    assert not missing, f"docs/deployment.md does not name these server.yaml fields: {missing}"


def test_server_defaults_match_the_code() -> None:
    text = (DOCS / "deployment.md").read_text(encoding="utf-8")
    page = "docs/deployment.md"
    checked = assert_defaults(text, server_config.ServerConfig, page)
    checked += assert_defaults(text, server_config.ServiceIdentity, page)
    checked += assert_defaults(text, server_config.ExternalIssuer, page)
    checked += assert_defaults(text, retention.RetentionSettings, page)
    checked += assert_defaults(text, webhooks.WebhookSettings, page, skip=("timeout_seconds",))
    assert checked >= 15


def test_deployment_examples_load(tmp_path: Path) -> None:
    """The server.yaml fragments of docs/deployment.md form a config the server accepts."""
    merged: dict[str, Any] = {
        "issuer_url": "https://streamctl.example.com",
        "database_url": "sqlite:///streamctl.db",
        "policy_file": "policy.yaml",
    }
    for lang, body in fenced(DOCS / "deployment.md"):
        if lang == "yaml":
            merged.update(yaml.safe_load(body))
    path = tmp_path / "server.yaml"
    path.write_text(yaml.safe_dump(merged), encoding="utf-8")
    cfg = server_config.load_config(path)
    assert cfg.database_url.startswith("postgresql+psycopg://")
    assert cfg.external_issuers[0].role_map["kafka-engineers"] == ("engineer",)
    assert webhooks.load_webhook_settings(path).urls
    assert retention.load_retention_settings(path).audit_seconds == 365 * 86400


def test_readme_tables_match_the_code() -> None:
    readme = README.read_text(encoding="utf-8")
    for code in ExitCode:
        assert f"| {int(code)} | {MEANINGS[code]} |" in readme, f"exit code {int(code)}"
    packages = sorted(
        p.name
        for p in (REPO / "streamctl").iterdir()
        if p.is_dir() and any(p.glob("*.py"))
    )
    assert len(packages) >= 8
    for name in [f"streamctl/{p}/" for p in packages] + [
        "tests/", "bench/", "scripts/", "completions/", "docs/"
    ]:
        assert f"| `{name}` |" in readme, f"README layout table lacks {name}"
    from bench.sections import SECTIONS

    for section in SECTIONS:
        assert f"| `{section}` |" in readme, f"README bench table lacks section {section}"
    for page in ("policy", "deployment", "broker-setup", "security", "api"):
        assert (DOCS / f"{page}.md").exists() and f"(docs/{page}.md)" in readme


# -- generated API page ------------------------------------------------------------------------


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_api_docs", REPO / "scripts" / "gen_api_docs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_docs_are_up_to_date() -> None:
    generator = load_generator()
    doc = generator.build_openapi()
    expected = generator.render(doc)
    current = (DOCS / "api.md").read_text(encoding="utf-8")
    assert current == expected, "docs/api.md is stale: run python scripts/gen_api_docs.py"
    for path, operations in doc["paths"].items():
        for method in operations:
            assert f"`{method.upper()} {path}`" in current
    assert "`POST /v1/grants`" in current and "### GrantRequest" in current


# -- commands and options ----------------------------------------------------------------------

INLINE = re.compile(r"`([^`\n]+)`")
MENTION = re.compile(r"(?<![\w/.$-])streamctl\s+(.*)")
WORD = re.compile(r"^[a-z][a-z-]*$")
OPTION = re.compile(r"^--?[a-zA-Z][\w-]*$")


def code_lines(path: Path) -> Iterator[str]:
    """Lines of shell-ish fenced blocks, and inline code spans of the prose."""
    text = path.read_text(encoding="utf-8")
    for language, body in fenced(path):
        if language in ("sh", "console", "text"):
            yield from body.splitlines()
    prose = FENCE.sub("", text)
    for line in prose.splitlines():
        yield from INLINE.findall(line)


def tokens_of(rest: str) -> list[str]:
    """Shell words up to the first pipe, separator, comment or closing backtick."""
    rest = rest.split("`", 1)[0]
    lexer = shlex.shlex(rest, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        words = list(lexer)
    except ValueError:
        words = rest.split()
    out = []
    for word in words:
        if word and set(word) <= set("();<>|&"):
            break
        out.append(word.strip("[]"))
    return out


def command_mentions() -> dict[tuple[str, ...], set[str]]:
    """Command path -> options written after it, for every `streamctl ...` in the docs."""
    root = typer.main.get_command(app)
    found: dict[tuple[str, ...], set[str]] = {}
    problems: list[str] = []
    for path in doc_files():
        for line in code_lines(path):
            for match in MENTION.finditer(line):
                words = tokens_of(match.group(1))
                command: Any = root
                chain: list[str] = []
                options: set[str] = set()
                for word in words:
                    if OPTION.match(word.split("=", 1)[0]):
                        options.add(word.split("=", 1)[0])
                        continue
                    subcommands = getattr(command, "commands", None)
                    if subcommands is None:
                        continue  # an argument of a leaf command
                    if word in subcommands:
                        command = subcommands[word]
                        chain.append(word)
                    elif WORD.match(word):
                        problems.append(f"{path.name}: streamctl {' '.join([*chain, word])}")
                        break
                    else:
                        break
                found.setdefault(tuple(chain), set()).update(options)
    assert not problems, f"commands that do not exist: {problems}"
    return found


def test_every_documented_command_and_option_exists() -> None:
    root = typer.main.get_command(app)
    mentions = command_mentions()
    assert ("server", "init") in mentions and ("connect",) in mentions
    wrong = []
    for chain, options in mentions.items():
        command: Any = root
        for word in chain:
            command = command.commands[word]
        known = {"--help", "-h"}
        for param in command.params:
            known |= set(param.opts) | set(param.secondary_opts)
        wrong += [f"streamctl {' '.join(chain)} {o}" for o in sorted(options - known)]
    assert not wrong, f"options the commands do not have: {wrong}"


def test_every_documented_command_shows_its_help() -> None:
    """`streamctl <command> --help` for every command the docs name (in-process: one start-up
    per command would cost a minute on a busy machine; the sh blocks run the console script)."""
    from typer.testing import CliRunner

    runner = CliRunner()
    chains = sorted(command_mentions())
    assert len(chains) >= 20
    for chain in chains:
        result = runner.invoke(app, [*chain, "--help"], env={"COLUMNS": "100"})
        assert result.exit_code == 0, f"streamctl {' '.join(chain)} --help: {result.output}"
        assert "Usage:" in result.output and " ".join(chain) in result.output
