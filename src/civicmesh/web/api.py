"""HTTP of the dashboard: the page at `/`, its static files, the base map, its layer list and the live stream.

`/web/events` is a server-sent-events stream fed by the change events. The hub is a (non-durable) relay
subscriber: a live view starts at the tip and a reconnecting page reloads its layers, so nothing needs replaying.
Each connected page has its own bounded queue; its sender drains the queue in batches and passes each batch
through the exchange gate's `screen` as the page's caller, so a user receives only the entities, and only the
attributes, the gate lets that user read. Screening a batch at once keeps the gate's cost (and its metering: one
record per batch, operation `stream`) proportional to batches, not to single changes.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response, StreamingResponse

from civicmesh.demo.basemap import city_basemap
from civicmesh.errors import Problem
from civicmesh.events import ENTITY_CREATED, ENTITY_DELETED, ENTITY_UPDATED, ChangeEvent
from civicmesh.exchange.enforce import current_caller
from civicmesh.exchange.gate import ANONYMOUS, AccessRequest, Caller
from civicmesh.ngsild import DEMO_CONTEXT_URN, demo_context_url
from civicmesh.ngsild.http import tenant_of
from civicmesh.ngsild.render import SIMPLIFIED, View, render_entity

log = logging.getLogger("civicmesh.web")

STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".svg": "image/svg+xml", ".html": "text/html; charset=utf-8"}
_STATIC_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(js|css|svg)$")
# What the map draws: layer id -> the entity types it shows, its names and whether it is on at first.
LAYERS: list[dict[str, Any]] = [
    {"id": "air", "types": ["AirQualityObserved"], "zh": "空气质量", "en": "Air quality", "on": True},
    {"id": "traffic", "types": ["TrafficFlowObserved"], "zh": "交通流量", "en": "Traffic flow", "on": True},
    {"id": "streetlights", "types": ["Streetlight"], "zh": "路灯", "en": "Streetlights", "on": True},
    {"id": "parking", "types": ["OffStreetParking"], "zh": "停车场", "en": "Parking", "on": True},
    {"id": "energy", "types": ["SolarEnergy", "StorageBatteryDevice", "EVChargingStation"],
     "zh": "能源设施", "en": "Energy assets", "on": True},
    {"id": "bridge", "types": ["Bridge", "DeviceMeasurement"], "zh": "桥梁监测", "en": "Bridge monitoring",
     "on": True},
    {"id": "weather", "types": ["WeatherObserved"], "zh": "气象站", "en": "Weather", "on": False},
    {"id": "buildings", "types": ["Building"], "zh": "建筑", "en": "Buildings", "on": False},
    {"id": "alerts", "types": ["Alert"], "zh": "告警", "en": "Alerts", "on": True},
]
QUEUE_LIMIT = 5000  # events a slow page may lag behind before it is told to reload instead
BATCH_LIMIT = 500
KEEPALIVE_SECONDS = 15.0


def _epoch_ms(text: str) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000
    except ValueError:
        return time.time() * 1000


@dataclass(eq=False)
class Listener:
    """One connected page."""

    caller: Caller
    tenant: str
    queue: asyncio.Queue[ChangeEvent] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    overflowed: bool = False


class LiveHub:
    """Fans entity change events out to the connected pages."""

    def __init__(self, platform: Any) -> None:
        self.platform = platform
        self.listeners: set[Listener] = set()
        self.delivered = 0

    async def on_event(self, event: ChangeEvent) -> None:
        if event.kind not in (ENTITY_CREATED, ENTITY_UPDATED, ENTITY_DELETED):
            return
        for listener in self.listeners:
            if listener.tenant != event.tenant:
                continue
            try:
                listener.queue.put_nowait(event)
            except asyncio.QueueFull:
                listener.overflowed = True

    def terms(self) -> Any:
        return self.platform.extras["contexts"].term_map(DEMO_CONTEXT_URN)

    async def screened(self, listener: Listener, events: list[ChangeEvent]) -> dict[str, Any]:
        """The batch as this listener may see it: entities (keyValues, demo names) and ids of deleted ones."""
        latest: dict[str, ChangeEvent] = {}
        for event in events:  # a page needs only the newest state of each entity in the batch
            latest.pop(event.subject, None)
            latest[event.subject] = event
        current = [e.data["after"] for e in latest.values() if e.data.get("after") is not None]
        gone = [e.data["before"] for e in latest.values() if e.data.get("after") is None and e.data.get("before")]
        screen = getattr(self.platform.gate, "screen", None)
        if screen is not None:
            # Screen as this page's caller, also where the gate falls back on the ambient caller.
            token = current_caller.set(listener.caller)
            try:
                current = await screen(listener.caller, listener.tenant, "stream", current) if current else []
                gone = await screen(listener.caller, listener.tenant, "stream", gone) if gone else []
            finally:
                current_caller.reset(token)
        view = View(self.terms(), SIMPLIFIED)
        entities = []
        for doc in current:
            shown = render_entity(doc, view)
            shown["modifiedAt"] = doc.get("modifiedAt")
            entities.append(shown)
        return {"seq": events[-1].seq, "at": _epoch_ms(events[-1].at), "sent": time.time() * 1000,
                "entities": entities, "deleted": [d["id"] for d in gone]}

    async def stream(self, listener: Listener) -> AsyncIterator[bytes]:
        self.listeners.add(listener)
        try:
            yield b"retry: 2000\n" + _message("hello", {"subject": listener.caller.subject,
                                                         "organization": listener.caller.organization,
                                                         "tenant": listener.tenant})
            while True:
                try:
                    first = await asyncio.wait_for(listener.queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if listener.overflowed:
                    while not listener.queue.empty():
                        listener.queue.get_nowait()
                    listener.overflowed = False
                    yield _message("resync", {"reason": f"more than {QUEUE_LIMIT} changes waited for this page"})
                    continue
                batch = [first]
                while len(batch) < BATCH_LIMIT and not listener.queue.empty():
                    batch.append(listener.queue.get_nowait())
                try:
                    shown = await self.screened(listener, batch)
                except Problem as problem:  # e.g. a count limit reached: say so, keep the stream
                    yield _message("denied", {"detail": problem.detail})
                    continue
                if shown["entities"] or shown["deleted"]:
                    self.delivered += len(shown["entities"]) + len(shown["deleted"])
                    yield _message("entities", shown)
        finally:
            self.listeners.discard(listener)


def _message(kind: str, data: Any) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _static_files() -> dict[str, bytes]:
    folder = resources.files(__package__).joinpath("static")
    return {item.name: item.read_bytes() for item in folder.iterdir() if item.is_file()}


def router(hub: LiveHub, platform: Any) -> APIRouter:
    r = APIRouter(tags=["dashboard"])
    files = _static_files()
    if "index.html" not in files:
        raise RuntimeError("the dashboard's static/index.html is missing from the installed package")
    no_cache = {"Cache-Control": "no-cache"}

    @r.get("/", include_in_schema=False)
    async def index() -> Response:
        return Response(files["index.html"], media_type=STATIC_TYPES[".html"], headers=no_cache)

    @r.get("/web/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if not _STATIC_NAME.match(name) or name not in files:
            raise Problem("ResourceNotFound", f"the dashboard has no static file {name!r}")
        return Response(files[name], media_type=STATIC_TYPES["." + name.rsplit(".", 1)[1]], headers=no_cache)

    @r.get("/web/basemap", summary="The demo city's base map (GeoJSON): districts, the river, main roads")
    async def basemap() -> Response:
        return Response(orjson.dumps(city_basemap()), media_type="application/geo+json")

    @r.get("/web/config", summary="What the dashboard needs to start: its layers and the demo @context")
    async def config() -> dict[str, Any]:
        return {"context": demo_context_url(platform.settings), "layers": LAYERS,
                "auth": not platform.settings.no_auth}

    @r.get("/web/events", summary="Server-sent events: entity changes, screened by the gate for the caller")
    async def events(request: Request, tenant: str | None = None) -> Response:
        caller = getattr(request.state, "caller", ANONYMOUS)
        chosen = tenant_of(request) if tenant is None else tenant
        if tenant is not None and tenant and not re.match(r"^[A-Za-z0-9_.-]{1,64}$", tenant):
            raise Problem("BadRequestData", f"tenant name {tenant!r} may use only letters, digits, '_', '-' and '.'")
        decision = await platform.gate.check(AccessRequest(caller, chosen, "query"))
        if not decision.allowed:
            raise Problem("Forbidden", decision.reason or "the access gate denied the live stream")
        listener = Listener(caller, chosen)
        return StreamingResponse(hub.stream(listener), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return r


def mount(app: FastAPI, platform: Any) -> None:
    hub = LiveHub(platform)
    platform.extras["web"] = hub
    if platform.relay is not None:
        platform.relay.subscribe("web", hub.on_event)
    app.include_router(router(hub, platform))
