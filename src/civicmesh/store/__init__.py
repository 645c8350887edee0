"""Persistence behind one interface. Engines: `sqlite:///path.db` (default) and `postgresql://...` (PostGIS)."""

from __future__ import annotations

from civicmesh.store.base import Change, EntityQuery, WritePlan
from civicmesh.store.interface import EntityStore

__all__ = ["Change", "EntityQuery", "EntityStore", "WritePlan", "open_store"]


def open_store(url: str) -> EntityStore:
    """An unopened store for a database URL; call `await store.open()`."""
    if url.startswith("sqlite:///"):
        from civicmesh.store.sqlite import SqliteStore

        return SqliteStore(url[len("sqlite:///"):] or ":memory:")
    if url == "sqlite://" or url == "sqlite:///:memory:":
        from civicmesh.store.sqlite import SqliteStore

        return SqliteStore(":memory:")
    if url.startswith(("postgresql://", "postgres://")):
        from civicmesh.store.postgres import PostgresStore

        return PostgresStore(url)
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///path.db or postgresql://user@host/db")
