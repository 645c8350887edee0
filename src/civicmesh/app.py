"""The ASGI app factory: one Settings object in, the whole platform out."""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from civicmesh import access, headers, metrics
from civicmesh.bodies import BodyLimit
from civicmesh.config import Settings
from civicmesh.errors import Problem
from civicmesh.events import OutboxRelay
from civicmesh.inputs import NulGuard
from civicmesh.platform import Core, Platform, Room, RoomBuilder, find_service
from civicmesh.store import open_store
from civicmesh.store.base import DATABASE_ERRORS, unavailable
from civicmesh.store.db import Database

log = logging.getLogger("civicmesh")

T = TypeVar("T")

# Each room module exposes `build(platform) -> Room`. Rooms depend only on the Platform, never on each other, so
# this order matters for two things alone: middleware nesting (the exchange's identity check is added first, so
# it is the innermost middleware and wraps every route) and the order lifespans start (the exchange seeds the
# demo organizations before the broker loads the demo city); shutdown runs in reverse.
ROOMS: list[str] = [
    "civicmesh.exchange.api",
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


def build_platform(settings: Settings) -> Platform:
    """The shared services, each made once from what it depends on; nothing touches the database yet."""
    from civicmesh.exchange.enforce import ExchangeGate
    from civicmesh.exchange.service import Exchange
    from civicmesh.ngsild import build_contexts
    from civicmesh.ngsild.broker import Broker, EntitySink
    from civicmesh.ngsild.routes import NgsiLd
    from civicmesh.store.exchange import ExchangeStore

    db = Database.from_url(settings.database_url, pool_size=settings.database_pool_size)
    store = open_store(db)
    store.regex_seconds = settings.regex_seconds
    relay = OutboxRelay(store)
    db.add_listener(relay.notify)
    core = Core(settings=settings, db=db, store=store, relay=relay, contexts=build_contexts(settings))
    exchange = Exchange(core, ExchangeStore(db))
    gate = ExchangeGate(exchange, core)
    broker = Broker(store, gate)
    ngsi = NgsiLd(broker, core.contexts, max_body=settings.max_body_bytes, max_limit=settings.max_limit,
                  default_limit=settings.default_limit, max_vertices=settings.max_geometry_vertices)
    return Platform(settings=settings, db=db, store=store, relay=relay, contexts=core.contexts, exchange=exchange,
                    gate=gate, broker=broker, entities=EntitySink(broker, core.contexts.core), ngsi=ngsi)


def default_rooms() -> list[RoomBuilder]:
    return [importlib.import_module(name).build for name in ROOMS]


def service(app: FastAPI, kind: type[T]) -> T:
    """The running app's one service of type `kind` (e.g. the IoT agent's `IotApi`), for tools and tests."""
    rooms: Sequence[Room] = app.state.rooms
    return find_service(rooms, kind)


def problem_response(problem: Problem) -> Response:
    import orjson

    return Response(orjson.dumps(problem.to_dict()), status_code=problem.status,
                    media_type="application/problem+json", headers=problem.headers or None)


def create_app(settings: Settings | None = None, rooms: Sequence[RoomBuilder] | None = None) -> FastAPI:
    """The app: the platform, then every room built on it (`rooms` defaults to ROOMS)."""
    settings = settings or Settings.from_env()
    platform = build_platform(settings)
    built = [build(platform) for build in (default_rooms() if rooms is None else rooms)]
    for room in built:
        for subscriber in room.subscribers:
            if subscriber.on_events is not None:
                platform.relay.subscribe_batch(subscriber.name, subscriber.on_events, durable=subscriber.durable)
            elif subscriber.on_event is not None:
                platform.relay.subscribe(subscriber.name, subscriber.on_event, durable=subscriber.durable)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Entered in order, left in reverse; a start that fails leaves through everything already entered, so a
        # room that cannot start leaves no open store, pool or task behind. The relay starts last, when every
        # durable subscriber is registered and every room is ready for its events, and stops first.
        async with AsyncExitStack() as stack:
            # Closed even when opening fails half-way (a pool opened, a migration failed).
            stack.push_async_callback(_logged_stop, "database", platform.db.close)  # after the store's own close
            stack.push_async_callback(_logged_stop, "store", platform.store.close)
            await platform.store.open()
            log.info("store: %s (%s engine)", _redacted(settings.database_url), platform.store.engine)
            for room in built:
                if room.lifespan is not None:
                    await stack.enter_async_context(_stops_logged(room.name, room.lifespan()))
            await platform.relay.start()
            stack.push_async_callback(_logged_stop, "relay", platform.relay.stop)
            yield

    app = FastAPI(title="civicmesh", version="0.1.0", lifespan=lifespan, redirect_slashes=False,
                  description="Open city data platform: NGSI-LD broker, live city, data exchange, ledger.")
    app.state.platform = platform
    app.state.rooms = tuple(built)

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

    @app.get("/health", include_in_schema=False, dependencies=[access.public.depends()])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    for room in built:
        for middleware in room.middleware:
            app.add_middleware(middleware.cls, *middleware.args, **middleware.kwargs)
        for router in room.routers:
            app.include_router(router)
    metrics.install(app, platform)
    app.add_middleware(NulGuard)  # a NUL in the path or query reaches no room (issue 13, finding 13)
    # Outermost last: CORS answers preflights, the headers cover every answer, the limit holds before any room.
    app.add_middleware(BodyLimit, default=settings.max_body_bytes)
    headers.install(app, settings.cors_origins)
    access.seal(app)  # every route declares its access rule, or the app is not built
    return app


async def _logged_stop(name: str, stop: Callable[[], Awaitable[None]]) -> None:
    # A step that cannot stop cleanly is logged, and every other step still runs.
    try:
        await stop()
    except Exception:
        log.exception("%s did not stop cleanly", name)


@asynccontextmanager
async def _stops_logged(name: str, lifespan: AbstractAsyncContextManager[None]) -> AsyncIterator[None]:
    await lifespan.__aenter__()
    try:
        yield
    finally:
        try:
            await lifespan.__aexit__(None, None, None)
        except Exception:
            log.exception("room %s did not stop cleanly", name)


def _redacted(url: str) -> str:
    """A database URL without its password, for logs."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}@{host}"
    return url
