"""What every response tells browsers: security headers (CSP, nosniff, framing, referrer) and the CORS policy.

API answers are data, never pages: their Content-Security-Policy forbids everything (`default-src 'none'`). A page
(the dashboard) sets its own policy with `page_policy`, which allows its own files and, by hash, its inline
scripts. FastAPI's /docs and /redoc load Swagger UI and ReDoc from a CDN, so they keep no CSP (the other headers
still apply). Cross-origin reads are refused unless CIVICMESH_CORS_ORIGINS lists the origins to allow.
"""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
_DOCS_PAGES = ("/docs", "/redoc")
_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.S)


def page_policy(html: bytes) -> str:
    """The CSP of one HTML page of ours: its own scripts, styles and images; inline scripts only by their hash.

    Inline style attributes stay allowed ('unsafe-inline' for styles): the dashboard colours legend swatches
    that way, and a style cannot run code."""
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(m.group(1)).digest()).decode()}'"
                      for m in _INLINE_SCRIPT.finditer(html))
    return ("default-src 'self'; script-src 'self' " + hashes + "; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
            "frame-ancestors 'none'; form-action 'self'")


class SecurityHeaders:
    """Add the security headers to every HTTP response that does not set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = scope["path"].startswith(_DOCS_PAGES)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(n, v) for n, v in SECURITY_HEADERS if n not in present]
                if not docs and b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", API_POLICY.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def install(app: FastAPI, cors_origins: str) -> None:
    """Security headers on every answer; CORS only for the configured origins (comma-separated; none by default)."""
    app.add_middleware(SecurityHeaders)
    origins = [o.strip() for o in cors_origins.split(",") if o.strip()]
    if origins:
        # Credentials travel in headers (X-API-Key, Authorization), never cookies: no allow_credentials.
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["*"],
                           allow_headers=["*"], expose_headers=["Location", "Link", "NGSILD-Results-Count"])
