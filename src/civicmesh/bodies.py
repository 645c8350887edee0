"""Request bodies: a size limit enforced while they stream in (ASGI middleware, per-route overrides), and `read_json`.

The limit holds for every request whether authentication is on or off, with or without Content-Length: a
declared length over the limit is refused before a byte is read, and a chunked body is counted chunk by chunk and
refused (413 ProblemDetails) the moment it passes the limit, so the rest is never read into memory.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Depends, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from civicmesh.errors import Problem
from civicmesh.inputs import check_json

LIMIT_KEY = "civicmesh.body_limit"


class BodyTooLarge(Problem):
    def __init__(self, detail: str) -> None:
        super().__init__("PayloadTooLarge", detail, status=413)


class BodyLimit:
    """Refuse request bodies over `default` bytes, or over a route's own limit (`limit_body`)."""

    def __init__(self, app: ASGIApp, default: int) -> None:
        self.app = app
        self.default = default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self._ceiling(scope):
            await _refuse(send, f"the body has {int(declared)} bytes; the limit is {self._ceiling(scope)}")
            return
        received = 0
        refused: str | None = None
        started = False

        async def counted() -> Message:
            nonlocal received, refused
            if refused is not None:  # a reader that ignored the error asks again: it gets the end, not more bytes
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                limit = self._ceiling(scope)
                if received > limit:
                    refused = f"the body is over the limit of {limit} bytes (refused after {received} bytes " \
                              "had arrived; the rest was not read)"
                    raise BodyTooLarge(refused)
            return message

        async def answer(message: Message) -> None:
            nonlocal started
            if refused is not None and not started:
                # Whatever the route made of the failed read (its own 400, a 500), the answer is the 413.
                if message["type"] == "http.response.start":
                    started = True
                    await _refuse(send, refused)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, answer)
        except Exception:
            if refused is None:
                raise
            if not started:
                await _refuse(send, refused)

    def _ceiling(self, scope: Scope) -> int:
        # A route's own limit (set by its limit_body dependency, which runs before the endpoint reads the body).
        limit = scope.get(LIMIT_KEY)
        return int(limit) if limit is not None else self.default


async def _refuse(send: Send, detail: str) -> None:
    body = orjson.dumps(BodyTooLarge(detail).to_dict())
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/problem+json"),
                            (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def limit_body(limit: int) -> Any:
    """A route's (or router's) own body limit, declared like its access rule: `dependencies=[limit_body(65536)]`."""

    async def set_limit(request: Request) -> None:
        request.scope[LIMIT_KEY] = limit

    return Depends(set_limit)


async def read_json(request: Request, limit: int | None = None, *, empty: Any = ...) -> Any:
    """The body parsed as JSON (400 if it is not), at most `limit` bytes (413); `empty`: what no body means
    (by default an empty body is not JSON either)."""
    if limit is not None:
        route_limit = request.scope.get(LIMIT_KEY)
        request.scope[LIMIT_KEY] = limit if route_limit is None else min(limit, int(route_limit))
    raw = await request.body()
    if limit is not None and len(raw) > limit:  # a body read before this limit was set (by an earlier reader)
        raise BodyTooLarge(f"the body has {len(raw)} bytes; the limit is {limit}")
    if empty is not ... and not raw.strip():
        return empty
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Problem("InvalidRequest", f"the body is not valid JSON: {exc}") from None
    check_json(raw, value)  # no NUL, no nesting past 128 levels (inputs.py)
    return value


async def read_object(request: Request, limit: int | None = None, *, empty: Any = ...) -> dict[str, Any]:
    """`read_json` for a body that must be a JSON object."""
    body = await read_json(request, limit, empty=empty)
    if not isinstance(body, dict):
        raise Problem("BadRequestData", "the body must be a JSON object")
    return body
