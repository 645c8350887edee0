"""Shared fixtures: both store engines, a real server on a loopback port for each, and the test lanes.

Lanes: every test is classified at collection from what it uses (the fixtures below) and, where a test starts a
server itself, by an explicit mark. `live` starts a real server on a loopback port, `postgres` needs the PostgreSQL
server, `browser` drives Chromium; `make test-fast` runs every test that has none of the three. A test that starts
a server or makes a PostgreSQL database without its mark fails at once, so a new test cannot slip into the wrong
lane.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import re
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import httpx
import pytest
import uvicorn

# Nothing a test starts may write into the checkout's ./civicmesh-data (where `make run` keeps the real data);
# Settings read it whenever they are made (tests that need another data directory set it themselves).
os.environ.setdefault("CIVICMESH_DATA_DIR", tempfile.mkdtemp(prefix="civicmesh-test-data-"))

from civicmesh.app import create_app  # noqa: E402
from civicmesh.cli import proxy_options  # noqa: E402
from civicmesh.config import Settings  # noqa: E402

# Room tests exercise behaviour with authentication off; tests/exchange/ turns it on and checks every room's
# endpoints behind it.
os.environ.setdefault("CIVICMESH_NO_AUTH", "true")
# The test receivers (webhooks, Mosquitto) listen on loopback, which the endpoint policy refuses unless allowed.
os.environ.setdefault("CIVICMESH_ENDPOINT_ALLOW", "127.0.0.1")

IN_CI = os.environ.get("CI") == "true"

# -- lanes --------------------------------------------------------------------------------------------------------
# A fixture starts a server when its body calls one of the project's ways to start one (found in its source, so a
# fixture written tomorrow is classified too), or when it is listed here because it starts something else: a
# notification receiver or a Mosquitto of its own. Listed as "<file>::<name>": names alone collide (the broker's
# query tests have a `city` of their own that is plain data). A test that uses such a fixture, directly or through
# another (`client` -> `server`), is `live`. Anything that still slips through is caught by the guard in
# LiveServer.start.
SERVER_STARTERS = re.compile(r"\b(?:start_server|secure_server|demo_server|gated_city|LiveServer|uvicorn\.Server)\(")
LIVE_FIXTURES = frozenset({
    "tests/ingest/test_iot_agent_live.py::private_mosquitto",
    "tests/ngsild/test_subscription_behaviour_live.py::receiver",
    "tests/ngsild/test_subscriptions_live.py::receiver",
})
BROWSER_FIXTURES = frozenset({"tests/web/conftest.py::browser"})
# Values of an engine parameter that select the PostgreSQL server (database_url, db_url, city, gated, ...).
POSTGRES_PARAMS = frozenset({"postgres", "postgresql"})
ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def starts_a_server(function: Callable[..., object] | None) -> bool:
    """Whether a fixture's own body calls one of SERVER_STARTERS."""
    try:
        return bool(SERVER_STARTERS.search(inspect.getsource(function))) if function else False
    except (OSError, TypeError):
        return False


def lanes_of(fixtures: Mapping[str, Callable[..., object] | None], params: dict[str, object]) -> set[str]:
    """The lanes a test belongs to, from the fixtures it uses ("<file>::<name>" -> its function, the whole
    closure) and its parameters."""
    lanes = set()
    if any(name in LIVE_FIXTURES or starts_a_server(function) for name, function in fixtures.items()):
        lanes.add("live")
    if BROWSER_FIXTURES.intersection(fixtures):
        lanes.add("browser")
    if any(isinstance(value, str) and value in POSTGRES_PARAMS for value in params.values()):
        lanes.add("postgres")
    return lanes


def fixtures_of(item: pytest.Item) -> dict[str, Callable[..., object]]:
    """Every fixture a test uses, "<file>::<name>" -> the function of the definition that applies (the closest)."""
    found = {}
    definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    for name in getattr(item, "fixturenames", ()):
        if definitions.get(name):
            function = definitions[name][-1].func
            where = Path(function.__code__.co_filename)
            found[f"{where.relative_to(ROOT) if where.is_relative_to(ROOT) else where}::{name}"] = function
    return found


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        for lane in lanes_of(fixtures_of(item), params):
            if item.get_closest_marker(lane) is None:
                item.add_marker(lane)


_running: list[pytest.Item] = []  # the test being set up, run or torn down, for the lane guard


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    _running.append(item)
    try:
        return (yield)
    finally:
        _running.pop()


def require_lane(lane: str, what: str) -> None:
    """Fail the running test if it does `what` without being in `lane` (outside a test, e.g. a benchmark, pass)."""
    if not _running or _running[-1].get_closest_marker(lane) is not None:
        return
    pytest.fail(f"{_running[-1].nodeid} {what} but is not marked {lane!r}: add @pytest.mark.{lane} (or "
                f"pytestmark = pytest.mark.{lane} for the module), or a fixture that starts it to LIVE_FIXTURES in "
                f"tests/conftest.py, so `make test-fast` leaves it out", pytrace=False)
PG_ADMIN = os.environ.get("CIVICMESH_TEST_PG", "postgresql://root@127.0.0.1:5432/postgres")


def postgres_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def require_postgres() -> None:
    require_lane("postgres", "needs the PostgreSQL server")
    if postgres_available():
        return
    if IN_CI:
        pytest.fail("PostgreSQL on 127.0.0.1:5432 is required under CI=true and is unreachable")
    pytest.skip("PostgreSQL on 127.0.0.1:5432 is unreachable")


def fresh_postgres_url(prefix: str = "civicmesh_test") -> str:
    import psycopg

    require_lane("postgres", "makes a PostgreSQL database")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def drop_postgres(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'civicmesh.db'}"
        return
    require_postgres()
    url = fresh_postgres_url()
    yield url
    drop_postgres(url)


@pytest.fixture
def private_database(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A database of the engine under test for this test alone (a server of its own, restarts, faults), so no
    other server relays its outbox or shares its queue: a SQLite file, or a fresh PostgreSQL database dropped
    afterwards."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'private.db'}"
        return
    url = fresh_postgres_url("civicmesh_private")
    yield url
    drop_postgres(url)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """The real app under uvicorn on a loopback port, in a background thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.port = settings.port
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on",
                                **proxy_options(settings))  # as `civicmesh serve` runs it
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> LiveServer:
        require_lane("live", "starts a server on a loopback port")
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


class _OnAppLoop(httpx.BaseTransport):
    """A sync httpx transport that hands each request to httpx.ASGITransport on the app's own event loop (the one
    its lifespan and background tasks run on), and gives back the bytes exactly as the app sent them."""

    def __init__(self, app: object, loop: asyncio.AbstractEventLoop) -> None:
        self._asgi = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        self._loop = loop

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()

        async def send() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            forwarded = httpx.Request(request.method, request.url, headers=request.headers, content=body)
            response = await self._asgi.handle_async_request(forwarded)
            raw = b"".join([chunk async for chunk in response.aiter_raw()])  # undecoded: the client decodes once
            return response.status_code, response.headers.raw, raw

        status, headers, raw = asyncio.run_coroutine_threadsafe(send(), self._loop).result(timeout=120)
        return httpx.Response(status, headers=headers, stream=httpx.ByteStream(raw))


class InProcessApp:
    """The real app in this process with its lifespan run (store, relay, every room's start), reached through
    httpx's ASGITransport: no socket, no port. For tests about what the API answers, not about the wire; a test
    that needs a socket (notifications to a receiver, SSE, a restart, a client that hangs up) uses LiveServer."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._lifespan = self.app.router.lifespan_context(self.app)

    def _run(self, step: object) -> object:
        return asyncio.run_coroutine_threadsafe(step, self.loop).result(timeout=60)  # type: ignore[arg-type]

    def start(self) -> InProcessApp:
        self.thread.start()
        self._run(self._lifespan.__aenter__())
        return self

    def client(self, path: str = "", **options: object) -> httpx.Client:
        return httpx.Client(transport=_OnAppLoop(self.app, self.loop), base_url="http://127.0.0.1" + path,
                            **options)  # type: ignore[arg-type]

    def stop(self) -> None:
        self._run(self._lifespan.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=15)
        self.loop.close()


def start_server(database_url: str, **settings: object) -> LiveServer:
    return LiveServer(Settings(database_url=database_url, port=free_port(), **settings)).start()  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def server(database_url: str) -> Iterator[LiveServer]:
    live = start_server(database_url, max_body_bytes=256 * 1024)
    yield live
    live.stop()


@pytest.fixture(scope="module")
def app(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessApp]:
    """The app in-process with the `server` fixture's settings, on a database of its own (the engine under test),
    so it never shares an outbox or a delivery queue with a server. One per module: on PostgreSQL an app holds its
    pools' connections (up to 28 before the one database seam), which a run on a shared server should give back."""
    if database_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path_factory.mktemp('in-process') / 'civicmesh.db'}"
    else:
        url = fresh_postgres_url("civicmesh_in_process")
    in_process = InProcessApp(Settings(database_url=url, max_body_bytes=256 * 1024)).start()
    yield in_process
    in_process.stop()
    if not url.startswith("sqlite"):
        drop_postgres(url)


@pytest.fixture
def app_client(app: InProcessApp, tenant: str) -> Iterator[httpx.Client]:
    """Like `client`, without a socket: the NGSI-LD API of the in-process app, in this test's own tenant."""
    with app.client("/ngsi-ld/v1", headers={"NGSILD-Tenant": tenant}, timeout=30) as c:
        yield c


@pytest.fixture
def tenant() -> str:
    """Each test writes into its own tenant, so tests never see each other's entities."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def client(server: LiveServer, tenant: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url + "/ngsi-ld/v1", headers={"NGSILD-Tenant": tenant}, timeout=30) as c:
        yield c


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
