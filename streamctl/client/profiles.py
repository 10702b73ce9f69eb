"""Profiles: one named set of settings per access server / cluster, in a TOML file.

The file lives in the platform's config directory (platformdirs), so
`~/.config/streamctl/config.toml` on Linux. Secrets never go in it: tokens live
in the token store, bot secrets in files the user names.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from streamctl.client.errors import ClientError

APP_NAME = "streamctl"
DEFAULT_PROFILE = "default"

#: Settings a profile may hold, with what each one means (shown by `streamctl config`).
PROFILE_KEYS: dict[str, str] = {
    "server": "URL of the access server, e.g. https://streamctl.example.com",
    "cluster": "cluster name to ask grants for (when the server knows several)",
    "output": "default output format: table, json or raw",
    "client_id": "OAuth client id for bots (client credentials); the secret stays in a file",
    "token_storage": "where tokens are kept: keyring (default) or file (--insecure-storage)",
}
TOKEN_STORAGES = ("keyring", "file")


class ConfigError(ClientError):
    """The config file or a setting is not usable; the message says which."""


def config_dir() -> Path:
    """The directory of config.toml (STREAMCTL_CONFIG_DIR overrides the platform default)."""
    override = os.environ.get("STREAMCTL_CONFIG_DIR")
    return Path(override) if override else Path(platformdirs.user_config_dir(APP_NAME))


def data_dir() -> Path:
    """Where token files (--insecure-storage) and refresh locks live."""
    override = os.environ.get("STREAMCTL_DATA_DIR")
    return Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME))


def config_path() -> Path:
    return config_dir() / "config.toml"


@dataclass
class Config:
    """The whole config file: the default profile's name and each profile's settings."""

    default_profile: str = DEFAULT_PROFILE
    profiles: dict[str, dict[str, str]] = field(default_factory=dict)

    def profile(self, name: str) -> dict[str, str]:
        return dict(self.profiles.get(name, {}))

    def set(self, profile: str, key: str, value: str) -> None:
        """Set one key of a profile, refusing unknown keys and bad values with a clear line."""
        if key not in PROFILE_KEYS:
            raise ConfigError(
                f"unknown setting {key!r}",
                hint=f"settings are: {', '.join(PROFILE_KEYS)}",
                code="usage",
            )
        if key == "token_storage" and value not in TOKEN_STORAGES:
            raise ConfigError(
                f"token_storage must be one of {', '.join(TOKEN_STORAGES)}", code="usage"
            )
        if key == "output" and value not in ("table", "json", "raw"):
            raise ConfigError("output must be one of table, json, raw", code="usage")
        if key == "server" and not value.startswith(("http://", "https://")):
            raise ConfigError(
                f"server must be an http:// or https:// URL, not {value!r}", code="usage"
            )
        self.profiles.setdefault(profile, {})[key] = value

    def unset(self, profile: str, key: str) -> bool:
        return self.profiles.get(profile, {}).pop(key, None) is not None


def load_config(path: Path | None = None) -> Config:
    """Read config.toml; a missing file is an empty config, a broken one an error."""
    path = path or config_path()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Config()
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(
            f"cannot read {path}: {exc}", hint="fix or delete the file, then try again"
        ) from exc
    profiles: dict[str, dict[str, str]] = {}
    for name, settings in (raw.get("profiles") or {}).items():
        if isinstance(settings, dict):
            profiles[str(name)] = {str(k): str(v) for k, v in settings.items()}
    return Config(
        default_profile=str(raw.get("default_profile", DEFAULT_PROFILE)), profiles=profiles
    )


def _toml_string(value: str) -> str:
    # A JSON string literal is a valid TOML basic string for everything we write.
    return json.dumps(value, ensure_ascii=False)


def _toml_key(key: str) -> str:
    bare = key.replace("-", "").replace("_", "")
    return key if bare.isalnum() and bare.isascii() else _toml_string(key)


def save_config(config: Config, path: Path | None = None) -> Path:
    """Write config.toml atomically."""
    path = path or config_path()
    lines = [
        "# streamctl settings; edit with `streamctl config set KEY VALUE [--profile P]`",
        f"default_profile = {_toml_string(config.default_profile)}",
    ]
    for name in sorted(config.profiles):
        lines.append("")
        lines.append(f"[profiles.{_toml_key(name)}]")
        for key in sorted(config.profiles[name]):
            lines.append(f"{_toml_key(key)} = {_toml_string(config.profiles[name][key])}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def valid_profile_name(name: str) -> bool:
    """Profile names become file names and keyring entries: keep them plain."""
    return bool(name) and all(c.isalnum() or c in "-_." for c in name) and name[0] != "."
