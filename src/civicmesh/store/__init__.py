"""Persistence behind one interface. Engines: `sqlite:///path.db` (default) and `postgresql://...` (PostGIS)."""

from __future__ import annotations

from civicmesh.store.base import Change, EntityQuery, WritePlan
from civicmesh.store.db import Database, PostgresDatabase, SqliteDatabase
from civicmesh.store.interface import EntityStore

__all__ = ["Change", "Database", "EntityQuery", "EntityStore", "WritePlan", "open_store"]


def open_store(target: str | Database) -> EntityStore:
    """An unopened entity store over a Database (or a URL: then a Database of its own, closed with the store);
    call `await store.open()`."""
    db = Database.from_url(target) if isinstance(target, str) else target
    store: EntityStore
    if isinstance(db, SqliteDatabase):
        from civicmesh.store.sqlite import SqliteStore

        store = SqliteStore(db)
    else:
        assert isinstance(db, PostgresDatabase)
        from civicmesh.store.postgres import PostgresStore

        store = PostgresStore(db)
    store.owns_db = isinstance(target, str)
    return store
