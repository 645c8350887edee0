"""Request input no room can store, refused at the edge with a 400: NUL characters and JSON nested too deep.

PostgreSQL text cannot hold a NUL (U+0000): a NUL in an id, type, attribute name or value, `q` or the path was a
500 there, and on SQLite a NUL in an id created the entity and then dropped the connection (issue 13, finding 13).
orjson writes at most 254 levels of nesting, so a value nested ~250 levels deep was stored and then failed on the
way out (500). `check_json` runs on every parsed JSON body; `NulGuard` on every path and query string.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from civicmesh.errors import Problem

# Levels of arrays and objects a JSON body may have. An entity wraps a value in 3-4 levels (entity, attribute,
# value, sub-attribute), and orjson writes at most 254; 128 is far beyond any real value.
MAX_DEPTH = 128
# `\u0000` preceded by an even number of backslashes (so the `\u` itself is an escape): a NUL in a JSON string.
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def _first_nul(value: Any) -> str | None:
    """A readable path to the first key or string that contains a NUL, without recursion."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return path or "the value"
        elif isinstance(item, dict):
            for key, sub in item.items():
                if "\x00" in key:
                    return f"the name {key!r}" + (f" in {path}" if path else "")
                stack.append((sub, f"{path}.{key}" if path else key))
        elif isinstance(item, list):
            stack.extend((sub, f"{path}[{i}]") for i, sub in enumerate(item))
    return None


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if level > MAX_DEPTH:
                return level
            stack.extend((sub, level + 1) for sub in (item.values() if isinstance(item, dict) else item))
    return deepest


def check_json(raw: bytes, value: Any, where: str = "the body") -> None:
    """Refuse a parsed JSON body with a NUL in any key or string, or nested deeper than MAX_DEPTH. The scans of
    the raw bytes run in C, so an ordinary body is never walked in Python."""
    if _NUL_ESCAPE.search(raw) and (path := _first_nul(value)) is not None:
        raise Problem("BadRequestData", f"{where} has a NUL character (\\u0000) in {path}; NUL cannot be stored")
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        raise Problem("BadRequestData", f"{where} nests arrays and objects more than {MAX_DEPTH} levels deep")


def loads(raw: bytes, where: str = "the body") -> Any:
    """orjson.loads plus `check_json`; invalid JSON is a 400 InvalidRequest."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Problem("InvalidRequest", f"{where} is not valid JSON: {exc}") from None
    check_json(raw, value, where)
    return value


class NulGuard:
    """ASGI middleware: a NUL (%00) in the path or the query string is a 400 before any room sees it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw_path = scope.get("raw_path") or scope.get("path", "").encode()
            query = scope.get("query_string", b"")
            where = "path" if b"%00" in raw_path or "\x00" in scope.get("path", "") else \
                "query string" if b"%00" in query or b"\x00" in query else None
            if where is not None:
                problem = Problem("BadRequestData", f"the {where} has a NUL character (%00); NUL cannot be stored "
                                  "or matched")
                body = orjson.dumps(problem.to_dict())
                await send({"type": "http.response.start", "status": 400, "headers": [
                    (b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
