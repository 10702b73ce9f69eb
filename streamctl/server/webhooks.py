"""Webhook notifications for approvals: JSON with a Slack-compatible `text`, retried with backoff.

Settings come from the `webhooks` section of the server settings file:

    webhooks:
      urls: [https://hooks.slack.com/services/...]
      max_attempts: 8          # per delivery, first attempt included
      backoff_seconds: 1.0     # delay before the first retry; doubles, capped at 60 s

Deliveries run on one daemon thread per server process, off the request path, so a
slow or down receiver never delays an approval; a delivery that keeps failing is
logged (without its URL, which may hold a token) and dropped after the last attempt.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

log = logging.getLogger("streamctl.server.webhooks")

MAX_BACKOFF_SECONDS = 60.0


class WebhookSettingsError(ValueError):
    """The `webhooks` section of the settings file is wrong; the message names the field."""


@dataclass(frozen=True)
class WebhookSettings:
    """Where to send notifications and how hard to try."""

    urls: tuple[str, ...] = ()
    max_attempts: int = 8
    backoff_seconds: float = 1.0
    timeout_seconds: float = 5.0


def read_section(path: Path, name: str) -> Mapping[str, Any]:
    """One top-level mapping of the server settings file (empty when absent)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}
    section = raw.get(name) if isinstance(raw, dict) else None
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise WebhookSettingsError(f"{path}: '{name}' must be a mapping")
    return section


def load_webhook_settings(path: Path) -> WebhookSettings:
    """Read the `webhooks` section; absent means no notifications."""
    raw = read_section(path, "webhooks")
    urls = raw.get("urls", [])
    if isinstance(urls, str):
        urls = [urls]
    if not isinstance(urls, list) or not all(
        isinstance(u, str) and u.startswith(("http://", "https://")) for u in urls
    ):
        raise WebhookSettingsError(f"{path}: webhooks.urls must be a list of http(s) URLs")
    attempts = raw.get("max_attempts", 8)
    backoff = raw.get("backoff_seconds", 1.0)
    if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
        raise WebhookSettingsError(f"{path}: webhooks.max_attempts must be a positive integer")
    if not isinstance(backoff, int | float) or isinstance(backoff, bool) or backoff <= 0:
        raise WebhookSettingsError(f"{path}: webhooks.backoff_seconds must be a positive number")
    return WebhookSettings(tuple(urls), attempts, float(backoff))


class WebhookDispatcher:
    """Delivers payloads to every configured URL on a background thread, retrying with backoff."""

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self._heap: list[tuple[float, int, str, dict[str, Any], int]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self.delivered = 0
        self.failed = 0  # deliveries dropped after the last attempt
        self.failed_attempts = 0  # attempts that did not get a 2xx answer

    def start(self) -> None:
        if self.settings.urls and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def submit(self, payload: Mapping[str, Any]) -> None:
        """Queue one notification for every URL; returns at once."""
        with self._cond:
            for url in self.settings.urls:
                heapq.heappush(self._heap, (time.monotonic(), next(self._order), url,
                                            dict(payload), 1))
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return len(self._heap)

    def _run(self) -> None:
        with httpx.Client(timeout=self.settings.timeout_seconds) as client:
            while True:
                with self._cond:
                    while not self._stopped and (
                        not self._heap or self._heap[0][0] > time.monotonic()
                    ):
                        wait = self._heap[0][0] - time.monotonic() if self._heap else None
                        self._cond.wait(timeout=wait)
                    if self._stopped:
                        return
                    _due, _n, url, payload, attempt = heapq.heappop(self._heap)
                ok = self._deliver(client, url, payload)
                with self._cond:
                    if ok:
                        self.delivered += 1
                        continue
                    self.failed_attempts += 1
                    if attempt < self.settings.max_attempts:
                        delay = min(
                            self.settings.backoff_seconds * 2 ** (attempt - 1),
                            MAX_BACKOFF_SECONDS,
                        )
                        heapq.heappush(self._heap, (time.monotonic() + delay, next(self._order),
                                                    url, payload, attempt + 1))
                    else:
                        self.failed += 1
                        log.warning("webhook %s for %s dropped after %d attempts",
                                    payload.get("event"), payload.get("approval_id"), attempt)

    @staticmethod
    def _deliver(client: httpx.Client, url: str, payload: Mapping[str, Any]) -> bool:
        try:
            resp = client.post(url, json=payload)
        except httpx.HTTPError:
            return False
        return 200 <= resp.status_code < 300


_DISPATCHERS: dict[int, WebhookDispatcher] = {}


def attach(state: object, dispatcher: WebhookDispatcher) -> None:
    """Make `notify(state, ...)` use this dispatcher."""
    _DISPATCHERS[id(state)] = dispatcher


def dispatcher_of(state: object) -> WebhookDispatcher | None:
    return _DISPATCHERS.get(id(state))


def detach(state: object) -> None:
    dispatcher = _DISPATCHERS.pop(id(state), None)
    if dispatcher is not None:
        dispatcher.stop()


def notify(state: object, payload: Mapping[str, Any]) -> None:
    """Send a notification through the state's dispatcher, if webhooks are configured."""
    dispatcher = _DISPATCHERS.get(id(state))
    if dispatcher is not None:
        dispatcher.submit(payload)
