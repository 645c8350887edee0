"""Fixtures for the citizen desk: both store engines, a fixed clock and a live Open311 server."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from civicmesh.citizen.catalogue import default_catalogue
from civicmesh.citizen.classifier import get_classifier
from civicmesh.citizen.service import CitizenDesk
from civicmesh.store.citizen import ensure_postgres_database, open_citizen_store

PG_URL = os.environ.get(
    "CIVICMESH_CITIZEN_TEST_PG", "postgresql://root@127.0.0.1:5432/civicmesh_citizen_test"
)
CST = dt.timezone(dt.timedelta(hours=8))
API_KEY = "test-client-key"
SPAM_KEY = "spam-client-key"


def _postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def require_postgres() -> None:
    if not _postgres_reachable():
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL on 127.0.0.1:5432 is unreachable and CI=true requires it")
        pytest.skip("PostgreSQL on 127.0.0.1:5432 is unreachable")


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'citizen.db'}"
    require_postgres()
    return PG_URL


class Clock:
    """A settable clock: tests move time instead of waiting for it."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now


Scenario = Callable[[CitizenDesk, Clock], Awaitable[Any]]


def run_desk(database_url: str, scenario: Scenario, start: dt.datetime, entities: Any = None) -> Any:
    """Run `scenario` against a fresh desk on a fresh schema of the given engine."""

    async def main() -> Any:
        if database_url.startswith("postgresql"):
            await ensure_postgres_database(database_url)
        store = open_citizen_store(database_url)
        await store.connect()
        try:
            await store.drop_all()
            await store.migrate()
            await store.add_api_key(API_KEY, "pytest", None, "2026-01-01T00:00:00Z")
            clock = Clock(start)
            desk = CitizenDesk(store, default_catalogue(), get_classifier, clock=clock, entities=entities)
            return await scenario(desk, clock)
        finally:
            await store.close()

    return asyncio.run(main())


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    def pick() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    return pick


class LiveServer:
    def __init__(self, app: Any, port: int) -> None:
        import uvicorn

        self.app = app
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the live server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
def live_server(database_url: str, free_port: Callable[[], int]) -> Iterator[LiveServer]:
    """The platform app with the citizen room mounted, served by uvicorn on a free loopback port."""
    from civicmesh.app import create_app
    from civicmesh.config import Settings

    async def prepare() -> None:
        if database_url.startswith("postgresql"):
            await ensure_postgres_database(database_url)
        store = open_citizen_store(database_url)
        await store.connect()
        await store.drop_all()
        await store.migrate()
        await store.add_api_key(API_KEY, "pytest live client", None, "2026-01-01T00:00:00Z")
        await store.add_api_key(SPAM_KEY, "a client that floods", 2, "2026-01-01T00:00:00Z")
        await store.close()

    asyncio.run(prepare())
    app = create_app(Settings(database_url=database_url))
    with LiveServer(app, free_port()) as server:
        yield server
