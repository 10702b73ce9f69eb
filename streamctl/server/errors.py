"""One error shape for every endpoint, a request-body size limit, and no 500 for bad input.

Errors are JSON `{"error": "<snake_code>", "message": "<one human line>", "hint": ...}`;
OAuth endpoints also carry `error_description` (RFC 6749 section 5.2) so plain
OAuth clients read them too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("streamctl.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ApiError(Exception):
    """An expected refusal: turned into the JSON error shape with its HTTP status."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        hint: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.hint = hint
        self.headers = headers


def error_body(error: str, message: str, hint: str | None = None) -> dict[str, Any]:
    """The contract's error object, plus error_description for OAuth clients."""
    return {"error": error, "message": message, "hint": hint, "error_description": message}


def error_response(
    status: int,
    error: str,
    message: str,
    hint: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(error, message, hint), status_code=status, headers=headers)


def _describe_validation(exc: RequestValidationError) -> tuple[str, str]:
    """(error code, one line) for the first problem FastAPI found in the request."""
    errors = list(exc.errors())
    if not errors:
        return "invalid_request", "the request is not valid"
    first = errors[0]
    kind = str(first.get("type", ""))
    loc = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body",)) or "body"
    if kind == "json_invalid":
        return "malformed_body", "the request body is not valid JSON"
    if kind == "model_attributes_type" or (kind.endswith("_type") and loc in ("body", "")):
        return "invalid_request", "the request body must be a JSON object"
    msg = str(first.get("msg", "is not valid"))
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return "invalid_request", f"{loc}: {msg}{more}"


def install_error_handlers(app: FastAPI) -> None:
    """Route every failure through the one error shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.error, exc.message, exc.hint, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        code, message = _describe_validation(exc)
        status = 400 if request.url.path.startswith("/oauth/") or code == "malformed_body" else 422
        if request.url.path.startswith("/oauth/"):
            code = "invalid_request"
        return error_response(status, code, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {
            400: "bad_request",
            404: "not_found",
            405: "method_not_allowed",
            413: "body_too_large",
        }.get(exc.status_code, "http_error")
        return error_response(
            exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {})
        )

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return error_response(500, "internal_error", "the server failed; see its log")


#: A refused body is read and thrown away up to this many times the limit, so a normal client
#: (which sends its whole request before reading) gets the 413 instead of a reset connection.
DRAIN_FACTOR = 16


class BodySizeLimit:
    """ASGI middleware refusing request bodies above a size, declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            error_body("body_too_large", f"the request body is larger than {self.max_bytes} bytes")
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _drain(self, receive: Receive) -> None:
        """Discard the rest of a refused body (up to a budget) so the client reads our answer."""
        budget = DRAIN_FACTOR * self.max_bytes
        while budget > 0:
            message = await receive()
            if message["type"] != "http.request":
                return
            budget -= len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = self.max_bytes + 1
                if declared > self.max_bytes:
                    if declared <= DRAIN_FACTOR * self.max_bytes:
                        await self._drain(receive)
                    await self._refuse(send)
                    return
        # Read the body first (at most max_bytes are ever held), then replay it to the app:
        # a streamed body over the limit is refused before any endpoint sees a byte of it.
        body = bytearray()
        first: Message | None = None
        while True:
            message = await receive()
            if message["type"] != "http.request":
                first = message  # the client went away; let the app see it
                break
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                if message.get("more_body", False):
                    await self._drain(receive)
                await self._refuse(send)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                if first is not None:
                    return first
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
