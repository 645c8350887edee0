"""HTTP of the dashboard: the page at `/`, its static files, the base map, the layers and the live stream.

Static files are served under a version derived from their content (`/web/static/<version>/<name>`), so a browser
keeps them as immutable and asks again only after an upgrade; the modules import each other by relative path, so
the whole page moves to a new version at once. The page itself, the base map, the layer snapshot and the static
files are gzip-compressed for clients that accept it.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from importlib import resources
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from civicmesh.access import ANONYMOUS, AccessRequest, anonymous_data, public
from civicmesh.demo.basemap import city_basemap
from civicmesh.errors import Problem
from civicmesh.exchange import limits
from civicmesh.headers import page_policy
from civicmesh.ngsild import demo_context_url
from civicmesh.ngsild.http import tenant_of
from civicmesh.platform import Platform, Room, Subscriber
from civicmesh.web.layers import LAYERS, snapshot
from civicmesh.web.live import Listener, LiveHub

STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".svg": "image/svg+xml", ".html": "text/html; charset=utf-8"}
_STATIC_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(js|css|svg)$")
_TENANT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
NO_CACHE = {"Cache-Control": "no-cache"}
IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}
GZIP_MIN_BYTES = 1024


class StaticFile:
    """One file of the page, with its gzip form and validator computed once."""

    def __init__(self, name: str, body: bytes) -> None:
        self.name = name
        self.body = body
        self.gzipped = gzip.compress(body, compresslevel=9, mtime=0)
        self.etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        self.media_type = STATIC_TYPES["." + name.rsplit(".", 1)[1]]


def _static_files() -> dict[str, StaticFile]:
    folder = resources.files(__package__).joinpath("static")
    return {item.name: StaticFile(item.name, item.read_bytes()) for item in folder.iterdir() if item.is_file()}


def static_version(files: dict[str, StaticFile]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].body + b"\0")
    return digest.hexdigest()[:12]


def accepts_gzip(request: Request) -> bool:
    return "gzip" in request.headers.get("accept-encoding", "").lower()


def compressed(request: Request, body: bytes, media_type: str, headers: dict[str, str],
               gzipped: bytes | None = None) -> Response:
    headers = {**headers, "Vary": "Accept-Encoding"}
    if len(body) >= GZIP_MIN_BYTES and accepts_gzip(request):
        # Level 5: most of level 9's saving on JSON at a fraction of its time, for answers built per request.
        packed = gzipped if gzipped is not None else gzip.compress(body, compresslevel=5, mtime=0)
        return Response(packed, media_type=media_type, headers={**headers, "Content-Encoding": "gzip"})
    return Response(body, media_type=media_type, headers=headers)


def _chosen_tenant(request: Request, tenant: str | None) -> str:
    if tenant is None:
        return tenant_of(request)
    if tenant and not _TENANT.match(tenant):
        raise Problem("BadRequestData", f"tenant name {tenant!r} may use only letters, digits, '_', '-' and '.'")
    return tenant


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def router(hub: LiveHub, platform: Platform) -> APIRouter:
    streams = limits.StreamSlots(platform.settings.max_sse_per_identity)  # open /web/events per identity
    r = APIRouter(tags=["dashboard"])
    # The page, its files, the base map and the layer list hold no city data; the layers and the live stream do,
    # and the gate screens them per caller (public open data for anonymous callers).
    page, data = [public.depends()], [anonymous_data.depends()]
    files = _static_files()
    if "index.html" not in files:
        raise RuntimeError("the dashboard's static/index.html is missing from the installed package")
    version = static_version(files)
    index_html = StaticFile("index.html", files["index.html"].body.replace(
        b'"/web/static/', f'"/web/static/{version}/'.encode()))
    page_headers = {**NO_CACHE, "Content-Security-Policy": page_policy(index_html.body)}
    basemap_json = orjson.dumps(city_basemap())
    basemap_gzipped = gzip.compress(basemap_json, compresslevel=9, mtime=0)

    @r.get("/", include_in_schema=False, dependencies=page)
    async def index(request: Request) -> Response:
        return compressed(request, index_html.body, index_html.media_type, page_headers, index_html.gzipped)

    def serve(request: Request, name: str, headers: dict[str, str]) -> Response:
        if not _STATIC_NAME.match(name) or name not in files:
            raise Problem("ResourceNotFound", f"the dashboard has no static file {name!r}")
        found = files[name]
        headers = {**headers, "ETag": found.etag}
        if request.headers.get("if-none-match") == found.etag:
            return Response(status_code=304, headers=headers)
        return compressed(request, found.body, found.media_type, headers, found.gzipped)

    @r.get("/web/static/{name}", include_in_schema=False, dependencies=page)
    async def static(request: Request, name: str) -> Response:
        return serve(request, name, NO_CACHE)

    @r.get("/web/static/{wanted}/{name}", include_in_schema=False, dependencies=page)
    async def static_versioned(request: Request, wanted: str, name: str) -> Response:
        # A page of an older version still gets files, but must not keep them.
        return serve(request, name, IMMUTABLE if wanted == version else NO_CACHE)

    @r.get("/web/basemap", summary="The demo city's base map (GeoJSON): districts, the river, main roads",
           dependencies=page)
    async def basemap(request: Request) -> Response:
        return compressed(request, basemap_json, "application/geo+json", NO_CACHE, basemap_gzipped)

    @r.get("/web/config", summary="What the dashboard needs to start: its layers and the demo @context",
           dependencies=page)
    async def config() -> dict[str, Any]:
        return {"context": demo_context_url(platform.settings), "layers": LAYERS,
                "auth": not platform.settings.no_auth}

    @r.get("/web/layers", summary="Every map layer's entities, as the exchange gate lets the caller read them "
                                  "(keyValues, demo @context names), in one answer",
           dependencies=data)
    async def layers(request: Request, tenant: str | None = None) -> Response:
        caller = getattr(request.state, "caller", ANONYMOUS)
        shown = await snapshot(platform, caller, _chosen_tenant(request, tenant))
        return compressed(request, orjson.dumps(shown), "application/json", {"Cache-Control": "no-store"})

    @r.get("/web/events", summary="Server-sent events: entity changes, screened by the gate for the caller",
           dependencies=data)
    async def events(request: Request, tenant: str | None = None) -> Response:
        caller = getattr(request.state, "caller", ANONYMOUS)
        chosen = _chosen_tenant(request, tenant)
        decision = await platform.gate.check(AccessRequest(caller, chosen, "query"))
        if not decision.allowed:
            raise Problem("Forbidden", decision.reason or "the access gate denied the live stream")
        listener, slot = Listener(caller, chosen), streams.acquire(limits.stream_identity(caller, _client(request)))
        live = limits.credential_check(platform.gate, caller)  # a revoked key ends the stream
        return StreamingResponse(streams.held(slot, hub.stream(listener), live), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return r


def build(platform: Platform) -> Room:
    """Serve the dashboard at / with its live event stream (a transient subscriber: it starts at the tip)."""
    hub = LiveHub(platform)
    return Room("web", routers=[router(hub, platform)], services=[hub],
                subscribers=[Subscriber("web", on_events=hub.on_events)])
