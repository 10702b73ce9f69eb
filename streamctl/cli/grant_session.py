"""Get a verified grant and run a local tunnel with it: shared by connect, tail and produce.

The grant is requested from the access server, verified against the server's
JWKS (signature, algorithm, key id, issuer, audience, time claims), and only
then handed to the tunnel engine. A refusal that needs an approval is retried
with a matching approved approval when the user has one.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from streamctl.cli.common import Session, to_epoch
from streamctl.client.api import AccessClient
from streamctl.client.errors import ApprovalRequired, ServerFailed
from streamctl.client.grant_verify import verify_grant_token
from streamctl.policy.grant import Grant


@dataclass(frozen=True)
class IssuedGrant:
    """A grant the server issued and we verified, with its raw token for the tunnel."""

    grant: Grant
    token: str
    grant_id: str
    approval_id: str | None


def _matching_approval(
    client: AccessClient, topics: Sequence[str], operations: Sequence[str]
) -> str | None:
    """An approved approval of mine whose topics, operations and window cover this request."""
    now = time.time()
    for approval in client.list_approvals("mine"):
        if approval.get("status") != "approved":
            continue
        if not set(topics) <= set(approval.get("topics") or []):
            continue
        if not set(operations) & set(approval.get("operations") or []):
            continue
        start = to_epoch(approval.get("window_start"))
        end = to_epoch(approval.get("window_end"))
        if (start is not None and start > now) or (end is not None and end <= now):
            continue
        return str(approval.get("id"))
    return None


def grant_audience(claims: dict[str, Any]) -> str | None:
    """The audience the server put in the grant (checked to be a string or list of strings)."""
    aud = claims.get("aud")
    if isinstance(aud, str) and aud:
        return aud
    if isinstance(aud, list) and aud and all(isinstance(a, str) for a in aud):
        return str(aud[0])
    return None


def obtain_grant(
    session: Session,
    *,
    topics: Sequence[str],
    operations: Sequence[str],
    ttl_seconds: int | None,
    reason: str | None,
    approval_id: str | None = None,
) -> IssuedGrant:
    """Request a grant (using an approval when needed) and verify its token."""
    client = session.client()
    cluster = session.settings.get("cluster")
    try:
        body = client.request_grant(
            topics=topics, operations=operations, ttl_seconds=ttl_seconds, reason=reason,
            cluster=cluster, approval_id=approval_id,
        )
    except ApprovalRequired as exc:
        found = None if approval_id else _matching_approval(client, topics, operations)
        if found is None:
            flags = "".join(f" --{op}" for op in operations if op in ("read", "write"))
            exc.hint = exc.hint or (
                f"run `streamctl request-approval {' '.join(topics)}{flags} --reason ...`"
            )
            raise
        approval_id = found
        body = client.request_grant(
            topics=topics, operations=operations, ttl_seconds=ttl_seconds, reason=reason,
            cluster=cluster, approval_id=approval_id,
        )
    token = body.get("token")
    if not isinstance(token, str) or not token:
        raise ServerFailed("the access server issued a grant without a token")
    discovery = session.anonymous().openid_configuration()
    issuer = str(discovery.get("issuer") or session.require_server())
    claims = body.get("claims") if isinstance(body.get("claims"), dict) else {}
    audience = grant_audience(claims or {})
    if audience is None:
        raise ServerFailed("the access server issued a grant without an audience")
    grant = verify_grant_token(token, session.anonymous().jwks(), issuer=issuer, audience=audience)
    return IssuedGrant(
        grant=grant, token=token, grant_id=str(body.get("grant_id") or grant.grant_id),
        approval_id=approval_id,
    )


@contextmanager
def local_tunnel(issued: IssuedGrant, *, port: int = 0) -> Iterator[str]:
    """Run the tunnel engine in a background thread; yields the bootstrap address."""
    engine: Any = importlib.import_module("streamctl.tunnel.engine")
    with engine.run_tunnel_in_thread(issued.grant, issued.token, bootstrap_port=port) as bootstrap:
        yield str(bootstrap)
