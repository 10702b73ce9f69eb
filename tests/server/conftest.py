"""Access-server fixtures: a store on SQLite and on real PostgreSQL, and an in-process app."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from streamctl.server.app import create_app
from streamctl.server.config import ServerConfig, load_config
from tests.server.helpers import PASSWORDS, bearer, device_login, make_server_dir


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: SQLite in a temp dir, or a new database on the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'streamctl.db'}"
    postgres = request.getfixturevalue("postgres")
    url: str = postgres.new_database()
    return url


@dataclass
class ApiServer:
    """An in-process server: its config, folder, HTTP client and dev passwords."""

    config: ServerConfig
    folder: Path
    client: TestClient
    passwords: dict[str, str]

    def login(self, user: str) -> str:
        """An access token for a dev user, by the device flow."""
        tokens = device_login(self.client, user, self.passwords[user])
        token: str = tokens["access_token"]
        return token

    def as_user(self, user: str) -> dict[str, str]:
        return bearer(self.login(user))

    def grant(self, headers: dict[str, str], **body: Any) -> Any:
        return self.client.post("/v1/grants", headers=headers, json=body)


def open_api(folder: Path, store_url: str, **settings: Any) -> Iterator[ApiServer]:
    result = make_server_dir(folder, store_url, "http://testserver", **settings)
    config = load_config(result.config_path)
    app = create_app(config)
    with TestClient(app) as client:
        yield ApiServer(config, folder, client, dict(PASSWORDS))
    app.state.server.store.dispose()


@pytest.fixture
def api(tmp_path: Path, store_url: str) -> Iterator[ApiServer]:
    """The app over SQLite and over PostgreSQL (each test runs on both)."""
    yield from open_api(tmp_path / "server", store_url)


@pytest.fixture
def sqlite_api(tmp_path: Path) -> Iterator[ApiServer]:
    """The app over SQLite only, for checks that do not depend on the store."""
    yield from open_api(tmp_path / "server", f"sqlite:///{tmp_path / 's.db'}")
