"""The access server's own settings file (`server.yaml`), loaded and validated into typed values.

The policy (roles, topic classes, clusters) lives in its own file, named here;
this file says where the server listens, which database and keys it uses, who
the dev users and service identities are, and which external issuers it trusts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """The server settings file is wrong; the message names the file, the field and the problem."""


@dataclass(frozen=True)
class DevUser:
    """A user of the built-in issuer, with an argon2 password hash."""

    username: str
    password_hash: str


@dataclass(frozen=True)
class ServiceIdentity:
    """A bot that logs in with client credentials; its roles come from the policy members."""

    client_id: str
    secret_hash: str
    roles: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExternalIssuer:
    """An OIDC provider whose access tokens the server accepts, with a claim mapped to roles."""

    issuer: str
    audience: str
    client_id: str
    roles_claim: str = "groups"
    role_map: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    subject_claim: str = "sub"


@dataclass(frozen=True)
class ServerConfig:
    """Everything the server needs to start, with paths already made absolute."""

    path: Path
    issuer_url: str
    database_url: str
    policy_file: Path
    keys_dir: Path
    host: str = "127.0.0.1"
    port: int = 8600
    users: tuple[DevUser, ...] = ()
    services: tuple[ServiceIdentity, ...] = ()
    external_issuers: tuple[ExternalIssuer, ...] = ()
    access_token_ttl_seconds: int = 900
    refresh_token_ttl_seconds: int = 8 * 3600
    device_code_ttl_seconds: int = 600
    device_poll_interval_seconds: int = 5
    user_code_failures_per_window: int = 10
    user_code_window_seconds: int = 300
    max_body_bytes: int = 64 * 1024
    key_algorithm: str = "ES256"

    def user(self, username: str) -> DevUser | None:
        return next((u for u in self.users if u.username == username), None)

    def service(self, client_id: str) -> ServiceIdentity | None:
        return next((s for s in self.services if s.client_id == client_id), None)


def _req(raw: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in raw:
        raise ConfigError(f"{where}: field '{key}' is missing")
    return _opt(raw, key, kind, where, None)


def _opt(raw: Mapping[str, Any], key: str, kind: type, where: str, default: Any) -> Any:
    value = raw.get(key, default)
    if value is None:
        return default
    if kind is int and isinstance(value, bool):
        raise ConfigError(f"{where}: field '{key}' must be an integer, got {value!r}")
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: field '{key}' must be {kind.__name__}, got {value!r}")
    return value


def _positive(value: int, where: str, key: str) -> int:
    if value <= 0:
        raise ConfigError(f"{where}: field '{key}' must be positive, got {value}")
    return value


def _database_url(url: str, base: Path) -> str:
    """A relative SQLite path is taken from the config file's folder, not the working directory."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        return prefix + str((base / url[len(prefix) :]).resolve())
    return url


def parse_config(raw: Any, path: Path) -> ServerConfig:
    """Validate a parsed YAML document; relative paths are taken from the file's folder."""
    where = str(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: the file must hold a mapping of settings")
    base = path.parent
    users = []
    for i, u in enumerate(_opt(raw, "users", list, where, [])):
        w = f"{where}: users[{i}]"
        if not isinstance(u, dict):
            raise ConfigError(f"{w}: must be a mapping with username and password_hash")
        users.append(DevUser(_req(u, "username", str, w), _req(u, "password_hash", str, w)))
    services = []
    for i, s in enumerate(_opt(raw, "services", list, where, [])):
        w = f"{where}: services[{i}]"
        if not isinstance(s, dict):
            raise ConfigError(f"{w}: must be a mapping with client_id and secret_hash")
        roles = tuple(str(r) for r in _opt(s, "roles", list, w, []))
        services.append(
            ServiceIdentity(_req(s, "client_id", str, w), _req(s, "secret_hash", str, w), roles)
        )
    externals = []
    for i, e in enumerate(_opt(raw, "external_issuers", list, where, [])):
        w = f"{where}: external_issuers[{i}]"
        if not isinstance(e, dict):
            raise ConfigError(f"{w}: must be a mapping with issuer, audience and client_id")
        role_map_raw = _opt(e, "role_map", dict, w, {})
        role_map: dict[str, tuple[str, ...]] = {}
        for claim_value, mapped in role_map_raw.items():
            mapped_roles = [mapped] if isinstance(mapped, str) else mapped
            if not isinstance(mapped_roles, list):
                raise ConfigError(f"{w}: role_map['{claim_value}'] must be a role or list of roles")
            role_map[str(claim_value)] = tuple(str(r) for r in mapped_roles)
        externals.append(
            ExternalIssuer(
                issuer=_req(e, "issuer", str, w).rstrip("/"),
                audience=_req(e, "audience", str, w),
                client_id=_req(e, "client_id", str, w),
                roles_claim=_opt(e, "roles_claim", str, w, "groups"),
                role_map=role_map,
                subject_claim=_opt(e, "subject_claim", str, w, "sub"),
            )
        )
    algorithm = _opt(raw, "key_algorithm", str, where, "ES256")
    if algorithm not in ("ES256", "EdDSA"):
        raise ConfigError(
            f"{where}: field 'key_algorithm' must be ES256 or EdDSA, got {algorithm!r}"
        )
    port = _opt(raw, "port", int, where, 8600)
    if not 0 <= port <= 65535:
        raise ConfigError(f"{where}: field 'port' must be 0..65535, got {port}")
    ints = {
        key: _positive(_opt(raw, key, int, where, default), where, key)
        for key, default in (
            ("access_token_ttl_seconds", 900),
            ("refresh_token_ttl_seconds", 8 * 3600),
            ("device_code_ttl_seconds", 600),
            ("device_poll_interval_seconds", 5),
            ("user_code_failures_per_window", 10),
            ("user_code_window_seconds", 300),
            ("max_body_bytes", 64 * 1024),
        )
    }
    return ServerConfig(
        path=path,
        issuer_url=_req(raw, "issuer_url", str, where).rstrip("/"),
        database_url=_database_url(_req(raw, "database_url", str, where), base),
        policy_file=(base / _req(raw, "policy_file", str, where)).resolve(),
        keys_dir=(base / _opt(raw, "keys_dir", str, where, "keys")).resolve(),
        host=_opt(raw, "host", str, where, "127.0.0.1"),
        port=port,
        users=tuple(users),
        services=tuple(services),
        external_issuers=tuple(externals),
        key_algorithm=algorithm,
        **ints,
    )


def load_config(path: Path) -> ServerConfig:
    """Read and validate the server settings file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the file ({exc.strerror})") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    return parse_config(raw, path.resolve())
