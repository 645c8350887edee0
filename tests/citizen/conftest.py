"""Fixtures for the citizen desk: both store engines, a fixed clock and a live Open311 server."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from civicmesh.citizen.catalogue import default_catalogue
from civicmesh.citizen.classifier import get_classifier
from civicmesh.citizen.service import CitizenDesk
from civicmesh.config import Settings
from civicmesh.store.citizen import CitizenStore
from civicmesh.store.db import Database
from tests.conftest import LiveServer, drop_postgres, free_port, fresh_postgres_url, require_postgres

CST = dt.timezone(dt.timedelta(hours=8))
API_KEY = "test-client-key"
SPAM_KEY = "spam-client-key"


@pytest.fixture(scope="session")
def citizen_postgres() -> Iterator[str]:
    """A PostgreSQL database of this test run's own (each test starts from an empty schema in it), so two runs on
    one server never clear each other's tables."""
    require_postgres()
    url = fresh_postgres_url("civicmesh_citizen")
    yield url
    drop_postgres(url)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'citizen.db'}"
    return str(request.getfixturevalue("citizen_postgres"))


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
        db = Database.from_url(database_url)
        await db.open()
        store = CitizenStore(db)
        try:
            await store.drop_all()
            await store.migrate()
            await store.add_api_key(API_KEY, "pytest", None, "2026-01-01T00:00:00Z")
            clock = Clock(start)
            desk = CitizenDesk(store, default_catalogue(), get_classifier, clock=clock, entities=entities)
            return await scenario(desk, clock)
        finally:
            await db.close()

    return asyncio.run(main())


@pytest.fixture
def live_server(database_url: str) -> Iterator[LiveServer]:
    """The platform app with the citizen room mounted, served by uvicorn on a free loopback port."""

    async def prepare() -> None:
        db = Database.from_url(database_url)
        await db.open()
        store = CitizenStore(db)
        await store.drop_all()
        await store.migrate()
        await store.add_api_key(API_KEY, "pytest live client", None, "2026-01-01T00:00:00Z")
        await store.add_api_key(SPAM_KEY, "a client that floods", 2, "2026-01-01T00:00:00Z")
        await db.close()

    asyncio.run(prepare())
    server = LiveServer(Settings(database_url=database_url, port=free_port())).start()
    yield server
    server.stop()
