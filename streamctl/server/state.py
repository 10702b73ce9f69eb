"""Everything one server process holds: settings, store, keys, the live policy, and the hooks."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from streamctl.policy.document import PolicyDocument, PolicyError, load_policy
from streamctl.server.config import ServerConfig
from streamctl.server.external import ExternalVerifier
from streamctl.server.hooks import ApprovalGate, DecisionRecorder, LogRecorder, NoApprovals
from streamctl.server.keys import KeyRing
from streamctl.server.store import Store

log = logging.getLogger("streamctl.server")

#: The audience of access tokens from the built-in issuer (never a cluster's audience).
API_AUDIENCE = "streamctl-api"
#: The CLI's public OAuth client id.
PUBLIC_CLIENT_ID = "streamctl"


class PolicySource:
    """The policy file, reloaded when it changes; a bad edit keeps the last good policy."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._mtime = path.stat().st_mtime_ns
        self._document = load_policy(path)
        self.last_error: str | None = None

    def current(self) -> PolicyDocument:
        """The newest valid policy."""
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError:
            return self._document
        if mtime != self._mtime:
            with self._lock:
                if mtime != self._mtime:
                    self._mtime = mtime
                    try:
                        self._document = load_policy(self.path)
                        self.last_error = None
                        log.info("policy reloaded from %s", self.path)
                    except PolicyError as exc:
                        self.last_error = str(exc)
                        log.error("policy reload refused, keeping the previous one: %s", exc)
        return self._document


@dataclass
class ServerState:
    """Shared by every request of one process; hooks are replaced by extensions at startup."""

    config: ServerConfig
    store: Store
    keys: KeyRing
    policy: PolicySource
    approval_gate: ApprovalGate = field(default_factory=NoApprovals)
    recorder: DecisionRecorder = field(default_factory=LogRecorder)
    external: dict[str, ExternalVerifier] = field(default_factory=dict)

    @classmethod
    def open(cls, config: ServerConfig) -> ServerState:
        """Load the policy and keys, connect the store and migrate it."""
        policy = PolicySource(config.policy_file)
        for cluster in policy.current().clusters.values():
            if cluster.audience == API_AUDIENCE:
                raise PolicyError(
                    [
                        f"{config.policy_file}: clusters.{cluster.name}.audience: "
                        f"'{API_AUDIENCE}' is reserved for the server's own access tokens"
                    ]
                )
        keep = max(config.access_token_ttl_seconds, policy.current().max_ttl_seconds) + 300
        keys = KeyRing(config.keys_dir, keep_seconds=keep)
        keys.active()  # fail at start, not at the first request
        store = Store(config.database_url)
        store.migrate()
        external = {e.issuer: ExternalVerifier(e) for e in config.external_issuers}
        return cls(config=config, store=store, keys=keys, policy=policy, external=external)

    def now(self) -> float:
        return time.time()
