"""`streamctl server init`: a starter folder with settings, policy, signing key and dev users.

Passwords are generated (or taken from the caller), stored only as argon2
hashes, and returned once so the CLI can show them.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml
from argon2 import PasswordHasher

from streamctl.server.device_flow import hash_password
from streamctl.server.keys import KeyRing

STARTER_POLICY = """\
# streamctl policy: who may ask for what, and the guardrails no grant overrides.
version: 1
ttl:
  default_seconds: 3600      # a grant lives this long unless the request says otherwise
  max_seconds: 28800         # no grant ever lives longer
reason_required: false       # true: every grant request must say why

roles:
  engineer:
    members: [alice]
    max_ttl_seconds: 14400
    grants:
      - topics: ["orders", "orders.*"]
        operations: [read, describe]
      - topics: ["payments"]
        operations: [read, write, describe]
        max_ttl_seconds: 3600
      - topics: ["audit-events"]
        operations: [read, delete, describe]
      - topics: ["sandbox.*"]
        operations: [read, write, create, delete, alter, describe]
  approver:
    members: [bob]
    grants:
      - topics: ["orders", "payments"]
        operations: [read, describe]

topic_classes:
  - topics: ["payments", "payments.*"]
    classes: [high-value]    # writes need an approval by someone else
  - topics: ["audit-events"]
    classes: [immutable]     # never deleted, altered or truncated
  - topics: ["orders", "orders.*"]
    classes: [pii]           # masking rules apply

masking:
  - name: customer-email
    topics: ["orders", "orders.*"]
    fields: ["customer.email"]
    strategy: hash
  - name: card-numbers
    topics: ["orders", "orders.*"]
    fields: ["payment.card"]
    detectors: [card]
    strategy: keep_last
    keep_last: 4

approvals:
  high-value:
    approver_roles: [approver]
    threshold: 1
    reason_required: true
    pending_ttl_seconds: 3600
    max_window_seconds: 14400

clusters:
  local:
    bootstrap: "127.0.0.1:9092"
    audience: kafka-local
    security_protocol: PLAINTEXT
    default: true
"""


@dataclass(frozen=True)
class StarterResult:
    """What init wrote, and the dev passwords to show exactly once."""

    config_path: Path
    policy_path: Path
    passwords: dict[str, str]


def write_starter(
    folder: Path,
    *,
    issuer_url: str = "http://127.0.0.1:8600",
    database_url: str = "sqlite:///streamctl.db",
    passwords: dict[str, str] | None = None,
    port: int = 8600,
    extra: dict[str, object] | None = None,
    policy_text: str = STARTER_POLICY,
    hasher: PasswordHasher | None = None,
) -> StarterResult:
    """Write server.yaml, policy.yaml and keys/ into an empty (or new) folder."""
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "server.yaml"
    if config_path.exists():
        raise FileExistsError(f"{config_path} already exists; not overwriting it")
    given = dict(passwords or {})
    chosen = {u: given.pop(u, "") or secrets.token_urlsafe(12) for u in ("alice", "bob")}
    chosen.update(given)
    settings: dict[str, object] = {
        "issuer_url": issuer_url,
        "host": "127.0.0.1",
        "port": port,
        "database_url": database_url,
        "policy_file": "policy.yaml",
        "keys_dir": "keys",
        "key_algorithm": "ES256",
        "access_token_ttl_seconds": 900,
        "device_code_ttl_seconds": 600,
        "device_poll_interval_seconds": 5,
        "users": [
            {"username": u, "password_hash": hash_password(p, hasher)} for u, p in chosen.items()
        ],
        "services": [],
        "external_issuers": [],
    }
    settings.update(extra or {})
    header = "# streamctl access server settings (holds password hashes: keep it private)\n"
    fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(header + yaml.safe_dump(settings, sort_keys=False))
    policy_path = folder / "policy.yaml"
    policy_path.write_text(policy_text, encoding="utf-8")
    KeyRing(folder / "keys", keep_seconds=0).create("ES256")
    return StarterResult(config_path, policy_path, chosen)
