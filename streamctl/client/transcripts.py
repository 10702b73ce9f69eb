"""The HTTP transport the transcript uploader uses, on top of the access-server client.

`streamctl.transcript.upload` stays free of I/O libraries and asks for a
transport callable; this adapter is that callable, authenticated as the user.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streamctl.client.api import AccessClient
from streamctl.transcript.upload import TransportResponse


class AccessServerTransport:
    """Sends the uploader's requests with the user's bearer token; errors stay as statuses."""

    def __init__(self, client: AccessClient) -> None:
        self._client = client

    def __call__(
        self,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        content: bytes | None = None,
        content_type: str | None = None,
    ) -> TransportResponse:
        headers = {"Content-Type": content_type} if content_type else None
        response = self._client._send(
            method,
            path if path.startswith("/") else "/" + path,
            json=dict(json_body) if json_body is not None else None,
            content=content,
            headers=headers,
        )
        try:
            body = response.json()
        except ValueError:
            body = {}
        return TransportResponse(
            status=response.status_code, body=body if isinstance(body, dict) else {}
        )
