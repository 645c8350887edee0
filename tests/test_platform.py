"""The app factory: rooms start in order, the relay last, and a room that cannot start leaves nothing open."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from civicmesh.app import ROOMS, create_app, default_rooms, service
from civicmesh.config import Settings
from civicmesh.ingest.api import IotApi
from civicmesh.platform import Platform, Room
from tests.conftest import PG_ADMIN


def _open_database_files(database_url: str) -> list[str]:
    """Files of a SQLite database this process still holds open (the database, its -wal and -shm)."""
    database = str(Path(database_url[len("sqlite:///"):]).resolve())
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(database):
            held.append(target)
    return held


def _postgres_sessions(database_url: str) -> int:
    import psycopg

    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                           (name,)).fetchone()
    assert row is not None
    return int(row[0])


def _still_open(database_url: str) -> int:
    if database_url.startswith("sqlite"):
        return len(_open_database_files(database_url))
    return _postgres_sessions(database_url)


def _failing_room(platform: Platform) -> Room:
    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        raise RuntimeError("the failing room cannot start")
        yield  # pragma: no cover - never reached

    return Room("failing", lifespan=lifespan)


def _other_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]


@pytest.mark.parametrize("failing_at", [None, len(ROOMS), 1],
                         ids=["clean shutdown", "the last room fails", "the second room fails"])
def test_every_room_and_the_store_close_when_a_room_cannot_start(private_database: str, tmp_path: Path,
                                                                   failing_at: int | None) -> None:
    settings = Settings(database_url=private_database, data_dir=tmp_path, port=1)
    fails = failing_at is not None
    # Failing last, every real room has opened what it opens first (the store, the exchange's, the citizen
    # desk's and the ledger's databases, the agent, supervision and delivery tasks); failing second, the rooms
    # after it never start.
    rooms = default_rooms()
    if failing_at is not None:
        rooms.insert(failing_at, _failing_room)
    app = create_app(settings, rooms=rooms)
    platform: Platform = app.state.platform

    async def run() -> None:
        entered = False
        try:
            async with app.router.lifespan_context(app):
                entered = True
                assert platform.relay.owner, "the relay did not start after the rooms"
                assert _still_open(private_database) > 0
                assert service(app, IotApi).agent is not None
        except RuntimeError as exc:
            assert fails and "the failing room cannot start" in str(exc)
        assert entered is not fails
        if fails:
            assert not platform.relay.owner, "the relay started although a room failed"
        await asyncio.sleep(0)
        assert _other_tasks() == [], "background tasks outlived the app"

    asyncio.run(run())
    assert _still_open(private_database) == 0, "database connections or files were left open"
    # The ledger (a later room) makes its signing key when it starts.
    assert (tmp_path / "ledger-keys" / "log.key").exists() is (failing_at != 1)


def test_rooms_are_built_on_one_frozen_platform(tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'city.db'}", data_dir=tmp_path))
    platform: Platform = app.state.platform
    assert [room.name for room in app.state.rooms] == ["exchange", "ngsild", "registrations", "subscriptions",
                                                        "temporal", "iot", "alerts", "ledger", "citizen",
                                                        "feasibility", "web"]
    assert len(app.state.rooms) == len(ROOMS)
    assert platform.broker.gate is platform.gate
    with pytest.raises(AttributeError):
        platform.gate = platform.gate  # type: ignore[misc]
    # Building the app opens no database: that is the lifespan's job (the ledger used to open its own here).
    assert _open_database_files(platform.settings.database_url) == []
    assert not (tmp_path / "city.db").exists()
