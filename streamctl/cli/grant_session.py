"""Get a verified grant and run a local tunnel with it: shared by connect, tail and produce.

The grant is requested from the access server, verified against the server's
JWKS (signature, algorithm, key id, issuer, audience, time claims), and only
then handed to the tunnel engine. A refusal that needs an approval is retried
with a matching approved approval when the user has one.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from streamctl.cli.common import Session, note, to_epoch
from streamctl.cli.transcripts import spool_dir
from streamctl.client.api import AccessClient
from streamctl.client.errors import ApprovalRequired, ClientError, ServerFailed
from streamctl.client.grant_verify import verify_grant_token
from streamctl.policy.grant import Grant

if TYPE_CHECKING:  # the tunnel stack (trio, codecs) is imported only by commands that run it
    from streamctl.transcript.recorder import TranscriptRecorder
    from streamctl.tunnel.engine import Tunnel, TunnelThread
    from streamctl.tunnel.stats import TunnelStats


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


@dataclass
class RunningTunnel:
    """What a command needs from a live tunnel: the bootstrap, its counters, its recording."""

    bootstrap: str
    tunnel: Tunnel
    handle: TunnelThread
    recorder: TranscriptRecorder | None

    @property
    def stats(self) -> TunnelStats:
        return self.tunnel.stats

    def ended(self) -> bool:
        """True once the tunnel stopped by itself (grant expiry, revocation, error)."""
        return self.handle.wait(0)


def _upload_transcript(session: Session, recorder: TranscriptRecorder) -> None:
    """Upload the sealed transcript now; on failure it stays spooled for `sessions sync`."""
    from streamctl.client.transcripts import AccessServerTransport
    from streamctl.transcript.upload import UploadError, upload_spool

    try:
        upload_spool(recorder.path, AccessServerTransport(session.client()))
    except (UploadError, OSError, ClientError) as exc:
        note(f"[yellow]warning:[/yellow] transcript {recorder.session_id} not uploaded yet "
             f"({exc}); it is kept and retried by `streamctl sessions sync`")


def upload_pending(session: Session) -> None:
    """Retry transcripts left behind by earlier sessions; never blocks the command on failure."""
    from streamctl.cli.transcripts import sync_spool

    try:
        for outcome in sync_spool(session):
            if outcome["uploaded"]:
                note(f"uploaded transcript {outcome['session_id']} left from an earlier session")
    except (ClientError, OSError):
        pass


#: How often a running tunnel asks the server whether its grant was revoked.
GRANT_POLL_SECONDS = float(os.environ.get("STREAMCTL_GRANT_POLL_SECONDS", "30"))


def _watch_revocation(
    session: Session, grant_id: str, handle: TunnelThread, stop: threading.Event
) -> None:
    """Poll the grant's status and end the tunnel once the server says it was revoked.

    An unreachable server does not end the tunnel: the grant still expires on its own
    deadline, and the poll simply tries again next interval.
    """
    client = session.client()
    while not stop.wait(GRANT_POLL_SECONDS):
        try:
            status = client.grant_status(grant_id)
        except ClientError:
            continue
        if status.get("revoked"):
            handle.revoke(f"grant {grant_id} was revoked on the access server")
            return


@contextmanager
def local_tunnel(
    session: Session, issued: IssuedGrant, *, port: int = 0, record: bool = True
) -> Iterator[RunningTunnel]:
    """Run the tunnel with masking and a transcript; on exit seal and upload the transcript."""
    from streamctl.masking.masker import GrantMasker
    from streamctl.transcript.recorder import TranscriptRecorder
    from streamctl.transcript.spool import ensure_spool_dir
    from streamctl.tunnel.engine import Tunnel, TunnelError, TunnelThread

    recorder: TranscriptRecorder | None = None
    if record:
        try:
            recorder = TranscriptRecorder(
                ensure_spool_dir(spool_dir()),
                subject=issued.grant.subject,
                grant_id=issued.grant_id,
                cluster=issued.grant.cluster.name,
                approval_id=issued.grant.approval_id,
            )
        except OSError as exc:
            raise ClientError(
                f"cannot record a transcript in {spool_dir()}: {exc}",
                hint="make that directory writable (or set STREAMCTL_DATA_DIR); "
                "streamctl does not run a tunnel without its transcript",
            ) from exc

    def on_notice(level: str, message: str) -> None:
        note(f"[yellow]{level}:[/yellow] {message}" if level != "info" else message)

    tunnel = Tunnel(
        issued.grant,
        issued.token,
        bootstrap_port=port,
        # A fresh secret per grant: hashed values join within this grant, nowhere else.
        # A grant without masking rules has nothing to mask: no masker keeps Fetch answers
        # on the relay path instead of decoding each one whole.
        masker=(GrantMasker(issued.grant, secrets.token_bytes(32))
                if issued.grant.masking else None),
        observer=recorder,
        on_notice=on_notice,
    )
    handle = TunnelThread(tunnel)
    stop_watching = threading.Event()
    reason = "stopped by the user"
    try:
        try:
            bootstrap = handle.start()
        except TunnelError as exc:
            raise ClientError(f"the tunnel could not start: {exc}") from exc
        except OSError as exc:
            raise ClientError(
                f"the tunnel could not listen: {exc.strerror or exc}",
                hint="pick another --port, or 0 for a free one",
            ) from exc
        watcher = threading.Thread(
            target=_watch_revocation,
            args=(session, issued.grant_id, handle, stop_watching),
            name="grant-revocation-watch",
            daemon=True,
        )
        watcher.start()
        yield RunningTunnel(bootstrap, tunnel, handle, recorder)
        reason = tunnel.stop_reason or "closed"
    finally:
        stop_watching.set()
        handle.stop(reason)
        if recorder is not None:
            recorder.seal(tunnel.stop_reason or reason)
            _upload_transcript(session, recorder)
