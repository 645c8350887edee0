"""The ASGI app factory: one Settings object in, the whole platform out."""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from civicmesh import metrics
from civicmesh.config import Settings
from civicmesh.errors import Problem
from civicmesh.events import OutboxRelay
from civicmesh.exchange.gate import Gate
from civicmesh.store import open_store
from civicmesh.store.base import DATABASE_ERRORS, unavailable
from civicmesh.store.db import Database

log = logging.getLogger("civicmesh")

# Each room module exposes `mount(app, platform)`; they are mounted in this order.
ROOMS: list[str] = [
    "civicmesh.exchange.api",  # first: its identity middleware and gate wrap every other room
    "civicmesh.ngsild",
    "civicmesh.ngsild.registrations",
    "civicmesh.ngsild.subscriptions",
    "civicmesh.ngsild.temporal",
    "civicmesh.ingest.api",
    "civicmesh.alerts.api",
    "civicmesh.ledger.api",
    "civicmesh.citizen.api",
    "civicmesh.feasibility.api",
    "civicmesh.web.api",  # the dashboard at /: reads the other rooms only through their HTTP APIs
]


@dataclass
class Platform:
    """What every room may use: settings, the store, the event relay and the gate."""

    settings: Settings
    db: Database
    store: Any = None
    relay: OutboxRelay | None = None
    gate: Gate = field(default_factory=Gate)
    extras: dict[str, Any] = field(default_factory=dict)


def problem_response(problem: Problem) -> Response:
    import orjson

    return Response(orjson.dumps(problem.to_dict()), status_code=problem.status,
                    media_type="application/problem+json")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    db = Database.from_url(settings.database_url, pool_size=settings.database_pool_size)
    store = open_store(db)
    relay = OutboxRelay(store)
    db.add_listener(relay.notify)
    platform = Platform(settings=settings, db=db, store=store, relay=relay)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for hook in app.state.startup_hooks:
            await hook()
        try:
            yield
        finally:
            # Every hook runs even when one before it fails, so a room that cannot stop cleanly does not leave
            # the relay running or the store's connections open.
            for hook in reversed(app.state.shutdown_hooks):
                try:
                    await hook()
                except Exception:
                    log.exception("shutdown step %s failed", getattr(hook, "__qualname__", hook))

    app = FastAPI(title="civicmesh", version="0.1.0", lifespan=lifespan, redirect_slashes=False,
                  description="Open city data platform: NGSI-LD broker, live city, data exchange, ledger.")
    app.state.platform = platform

    async def open_store_and_relay() -> None:
        await store.open()
        log.info("store: %s (%s engine)", _redacted(settings.database_url), store.engine)

    async def start_relay() -> None:
        await relay.start()

    async def stop_relay() -> None:
        await relay.stop()

    async def close_store() -> None:
        try:
            await store.close()
        finally:
            await db.close()

    # Rooms append their own hooks while mounting: they run after the store opens and before the relay starts,
    # so every durable subscriber is registered when the relay replays the outbox. Shutdown runs in reverse: the
    # relay stops first, so no event reaches a room that has already closed, and the store closes last.
    app.state.startup_hooks = [open_store_and_relay]
    app.state.shutdown_hooks = [close_store]

    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> Response:
        return problem_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return problem_response(Problem("BadRequestData", f"{where}: {first.get('msg', 'invalid input')}"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        kinds = {404: "ResourceNotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge",
                 415: "UnsupportedMediaType", 406: "NotAcceptable"}
        kind = kinds.get(exc.status_code, "InvalidRequest")
        return problem_response(Problem(kind, str(exc.detail), status=exc.status_code))

    async def _unexpected(request: Request, exc: Exception) -> Response:
        why = unavailable(exc)
        if why is not None:
            log.warning("503 on %s %s: %s (%s)", request.method, request.url.path, why, exc)
            response = problem_response(Problem("ServiceUnavailable", f"{why}; nothing was changed, try again",
                                                status=503, title="The service is temporarily unavailable"))
            response.headers["Retry-After"] = "1"
            return response
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem_response(Problem("InternalError", f"{type(exc).__name__} while serving "
                                        f"{request.method} {request.url.path}; the server log has the details"))

    # Database errors are answered here rather than by the catch-all, which closes the client's connection.
    for error in DATABASE_ERRORS:
        app.add_exception_handler(error, _unexpected)
    app.add_exception_handler(Exception, _unexpected)

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    for name in ROOMS:
        importlib.import_module(name).mount(app, platform)
    metrics.install(app, platform)
    app.state.startup_hooks.append(start_relay)
    app.state.shutdown_hooks.append(stop_relay)
    return app


def _redacted(url: str) -> str:
    """A database URL without its password, for logs."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}@{host}"
    return url
