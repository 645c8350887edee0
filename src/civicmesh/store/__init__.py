"""Persistence behind one interface. Engines: `sqlite:///path.db` (default) and `postgresql://...` (PostGIS)."""

from __future__ import annotations

from typing import Any

from civicmesh.store.base import Change, EntityQuery, WritePlan
from civicmesh.store.db import Database

__all__ = ["Change", "Database", "EntityQuery", "WritePlan", "open_store"]


def open_store(target: str | Database) -> Any:
    """An unopened entity store over a Database (or a URL: then a Database of its own, closed with the store);
    call `await store.open()`."""
    db = Database.from_url(target) if isinstance(target, str) else target
    if db.engine == "sqlite":
        from civicmesh.store.sqlite import SqliteStore

        store: Any = SqliteStore(db)  # type: ignore[arg-type]
    else:
        from civicmesh.store.postgres import PostgresStore

        store = PostgresStore(db)  # type: ignore[arg-type]
    store.owns_db = isinstance(target, str)
    return store
