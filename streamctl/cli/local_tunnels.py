"""A small registry of the tunnels running on this machine, so `streamctl status` can list them.

Each `connect` writes one JSON file named after its pid and removes it on exit;
files whose process is gone are ignored and cleaned up.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from streamctl.client.profiles import data_dir


def _directory() -> Path:
    return data_dir() / "tunnels"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def registered_tunnel(info: dict[str, Any]) -> Iterator[None]:
    """Advertise a running tunnel for as long as the block runs."""
    directory = _directory()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / f"{os.getpid()}.json"
    path.write_text(json.dumps({**info, "pid": os.getpid()}), encoding="utf-8")
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def running_tunnels() -> list[dict[str, Any]]:
    """The tunnels whose process still runs."""
    found: list[dict[str, Any]] = []
    directory = _directory()
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob("*.json")):
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            pid = int(info["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if _alive(pid):
            found.append(info)
        else:
            path.unlink(missing_ok=True)
    return found
