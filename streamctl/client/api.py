"""The access-server HTTP API as typed Python calls, over one httpx client.

Requests carry the caller's bearer token; every failure becomes one of the
typed errors in `streamctl.client.errors`, carrying the server's one-line
message and its hint (the next command to run).
"""

from __future__ import annotations

import functools
import json as _json
import ssl
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from streamctl.client.credentials import AccessTokenSource
from streamctl.client.errors import (
    ApprovalRequired,
    ClientError,
    Conflict,
    NotAuthorized,
    NotFound,
    NotLoggedIn,
    RequestRejected,
    ServerFailed,
    ServerUnreachable,
    TokenExpired,
)

#: Default per-request timeout; long-polls add their own wait on top.
DEFAULT_TIMEOUT_S = 15.0

JSON = dict[str, Any]

#: Server error codes that mean "get an approval first" rather than "you may never".
_APPROVAL_CODES = frozenset({"approval_required", "needs_approval"})


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The OS trust store (honours SSL_CERT_FILE), where corporate CAs are; built once."""
    return ssl.create_default_context()


def _error_from(response: httpx.Response) -> ClientError:
    """Turn a non-2xx answer into the typed error the CLI knows how to explain."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("detail"), dict):
        body = body["detail"]  # FastAPI's HTTPException wrapping
    if isinstance(body, dict):
        code = str(body.get("error") or "error")
        message = str(body.get("message") or body.get("detail") or code.replace("_", " "))
        hint_raw = body.get("hint")
        hint = str(hint_raw) if hint_raw else None
    else:
        code, message, hint = "error", f"HTTP {response.status_code}", None
    status = response.status_code
    if status == 401:
        if "expired" in code:
            return TokenExpired(message, hint or "run `streamctl login` to sign in again", code)
        return NotLoggedIn(message, hint or "run `streamctl login`", code)
    if status == 403:
        if code in _APPROVAL_CODES or "approval" in code:
            return ApprovalRequired(message, hint, code)
        return NotAuthorized(message, hint, code)
    if status == 404:
        return NotFound(message, hint, code)
    if status == 409:
        return Conflict(message, hint, code)
    if 400 <= status < 500:
        return RequestRejected(message, hint, code)
    return ServerFailed(f"the access server failed: {message} (HTTP {status})", hint, code)


class AccessClient:
    """One access server: anonymous discovery calls plus authenticated API calls."""

    def __init__(
        self,
        server: str,
        credentials: AccessTokenSource | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        http: httpx.Client | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self._credentials = credentials
        self.http = http or httpx.Client(
            timeout=timeout, follow_redirects=False, verify=tls_context()
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> AccessClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def with_credentials(self, credentials: AccessTokenSource) -> AccessClient:
        """The same server and connection pool, acting as `credentials`."""
        return AccessClient(self.server, credentials, http=self.http)

    # -- transport --------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        auth: bool = True,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        url = self.server + path
        clean_params = {k: v for k, v in (params or {}).items() if v is not None}
        for attempt in (0, 1):
            hdrs = {"Accept": "application/json", **(headers or {})}
            if auth:
                if self._credentials is None:
                    raise NotLoggedIn("not logged in", hint="run `streamctl login`")
                hdrs["Authorization"] = f"Bearer {self._credentials.access_token()}"
            try:
                response = self.http.request(
                    method,
                    url,
                    json=json,
                    params=clean_params or None,  # keep a query already in `path`
                    content=content,
                    headers=hdrs,
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
            except httpx.TimeoutException as exc:
                raise ServerUnreachable(
                    f"the access server at {self.server} did not answer in time",
                    hint="check that it is running, or pass --server / set STREAMCTL_SERVER",
                ) from exc
            except httpx.HTTPError as exc:
                raise ServerUnreachable(
                    f"cannot reach the access server at {self.server} ({type(exc).__name__})",
                    hint="check that it is running, or pass --server / set STREAMCTL_SERVER",
                ) from exc
            if (
                response.status_code == 401
                and auth
                and attempt == 0
                and self._credentials is not None
                and self._credentials.after_unauthorized()
            ):
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        if response.status_code >= 400:
            raise _error_from(response)
        if response.status_code == 204 or not response.content:
            return {}
        try:
            return response.json()
        except ValueError as exc:
            raise ServerFailed(
                f"{method} {path} answered something that is not JSON "
                f"(HTTP {response.status_code}); is {self.server} a streamctl access server?"
            ) from exc

    def _obj(self, method: str, path: str, **kwargs: Any) -> JSON:
        body = self._call(method, path, **kwargs)
        if not isinstance(body, dict):
            raise ServerFailed(f"{method} {path} answered {type(body).__name__}, not an object")
        return body

    def _list(self, method: str, path: str, key: str, **kwargs: Any) -> list[JSON]:
        body = self._call(method, path, **kwargs)
        if isinstance(body, dict):
            body = body.get(key, body.get("items", []))
        if not isinstance(body, list):
            raise ServerFailed(f"{method} {path} did not answer with a list")
        return [item for item in body if isinstance(item, dict)]

    # -- identity -----------------------------------------------------------------------------

    def login_config(self) -> JSON:
        """Which issuer to log in against (built-in or external) and with which client id."""
        return self._obj("GET", "/v1/login-config", auth=False)

    def jwks(self) -> JSON:
        return self._obj("GET", "/.well-known/jwks.json", auth=False)

    def openid_configuration(self) -> JSON:
        return self._obj("GET", "/.well-known/openid-configuration", auth=False)

    def whoami(self) -> JSON:
        return self._obj("GET", "/v1/whoami")

    # -- grants -------------------------------------------------------------------------------

    def request_grant(
        self,
        *,
        topics: Sequence[str],
        operations: Sequence[str],
        ttl_seconds: int | None,
        reason: str | None,
        cluster: str | None = None,
        approval_id: str | None = None,
    ) -> JSON:
        body: JSON = {"topics": list(topics), "operations": list(operations)}
        if cluster:
            body["cluster"] = cluster
        if ttl_seconds is not None:
            body["ttl_seconds"] = ttl_seconds
        if reason:
            body["reason"] = reason
        if approval_id:
            body["approval_id"] = approval_id
        return self._obj("POST", "/v1/grants", json=body)

    def list_grants(self) -> list[JSON]:
        return self._list("GET", "/v1/grants", "grants")

    def grant_status(self, grant_id: str) -> JSON:
        return self._obj("GET", f"/v1/grants/{_seg(grant_id)}/status")

    def revoke_grant(self, grant_id: str) -> JSON:
        return self._obj("POST", f"/v1/grants/{_seg(grant_id)}/revoke")

    # -- approvals ----------------------------------------------------------------------------

    def create_approval(
        self,
        *,
        topics: Sequence[str],
        operations: Sequence[str],
        duration_seconds: int,
        reason: str | None,
        start_at: str | None = None,
        reviewers: Sequence[str] = (),
    ) -> JSON:
        body: JSON = {
            "topics": list(topics),
            "operations": list(operations),
            "duration_seconds": duration_seconds,
            "reason": reason or "",
        }
        if start_at:
            body["start_at"] = start_at
        if reviewers:
            body["reviewers"] = list(reviewers)
        return self._obj("POST", "/v1/approvals", json=body)

    def list_approvals(self, scope: str = "mine") -> list[JSON]:
        return self._list("GET", "/v1/approvals", "approvals", params={"scope": scope})

    def get_approval(self, approval_id: str) -> JSON:
        return self._obj("GET", f"/v1/approvals/{_seg(approval_id)}")

    def wait_approval(self, approval_id: str, timeout_s: float) -> JSON:
        """Long-poll until the approval is decided or `timeout_s` passes (returns it either way)."""
        return self._obj(
            "GET",
            f"/v1/approvals/{_seg(approval_id)}/wait",
            params={"timeout": int(timeout_s)},
            timeout=timeout_s + DEFAULT_TIMEOUT_S,
        )

    def review_approval(self, approval_id: str, decision: str, reason: str | None) -> JSON:
        return self._obj(
            "POST",
            f"/v1/approvals/{_seg(approval_id)}/review",
            json={"decision": decision, "reason": reason or ""},
        )

    # -- transcripts and audit ------------------------------------------------------------------

    def list_sessions(
        self, *, subject: str | None = None, topic: str | None = None, since: str | None = None
    ) -> list[JSON]:
        return self._list(
            "GET",
            "/v1/sessions",
            "sessions",
            params={"subject": subject, "topic": topic, "since": since},
        )

    def get_session(self, session_id: str) -> JSON:
        return self._obj("GET", f"/v1/sessions/{_seg(session_id)}")

    def session_events(self, session_id: str) -> list[JSON]:
        """The stored events of a transcript, in sequence order (JSON list or JSON lines)."""
        response = self._send("GET", f"/v1/sessions/{_seg(session_id)}/events")
        if response.status_code >= 400:
            raise _error_from(response)
        text = response.text.strip()
        if not text:
            return []
        try:
            if text.startswith("["):
                parsed = _json.loads(text)
            elif text.startswith("{") and "\n" not in text:
                one = _json.loads(text)
                parsed = one.get("events", [one]) if isinstance(one, dict) else []
            else:
                parsed = [_json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError as exc:
            raise ServerFailed("the transcript events are not valid JSON") from exc
        return [e for e in parsed if isinstance(e, dict)]

    def audit(self, which: str, topic: str, partition: int, offset: int) -> JSON:
        """Who produced or consumed one offset (`which` is "produced" or "consumed")."""
        return self._obj(
            "GET",
            f"/v1/audit/{which}",
            params={"topic": topic, "partition": partition, "offset": offset},
        )


def _seg(value: str) -> str:
    """A URL path segment: ids are opaque to us, so escape everything unusual."""
    return quote(value, safe="")
