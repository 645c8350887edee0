"""Fixtures: both store engines (SQLite always; PostgreSQL when reachable, required under CI=true)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_BASE = os.environ.get("CIVICMESH_TEST_PG", "postgresql://root@127.0.0.1:5432")
# A database of this test run's own (each test then gets a schema in it), so two runs on one server never share
# tables or the PostGIS extension's schema.
PG_DB = f"civicmesh_ledger_{uuid.uuid4().hex[:10]}"
VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "vectors" / "merkle" / "testdata"


def _pg_unavailable() -> str | None:
    try:
        import psycopg

        with psycopg.connect(f"{PG_BASE}/postgres", autocommit=True, connect_timeout=3) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PG_DB,)).fetchone() is None:
                conn.execute(f"CREATE DATABASE {PG_DB}")
        return None
    except Exception as exc:  # any failure to reach the server means: skip (or fail under CI)
        return f"PostgreSQL at {PG_BASE} is unreachable: {exc}"


@pytest.fixture(scope="session")
def pg_reason() -> Iterator[str | None]:
    reason = _pg_unavailable()
    yield reason
    if reason is None:
        import psycopg

        with psycopg.connect(f"{PG_BASE}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)')


def _pg_url(pg_reason: str | None) -> Iterator[str]:
    if pg_reason:
        if os.environ.get("CI") == "true":
            pytest.fail(pg_reason)
        pytest.skip(pg_reason)
    import psycopg

    schema = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(f"{PG_BASE}/{PG_DB}", autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    # Each test gets its own schema through search_path, so tests never see each other's tables.
    yield f"{PG_BASE}/{PG_DB}?options=-csearch_path%3D{schema}"
    with psycopg.connect(f"{PG_BASE}/{PG_DB}", autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, pg_reason: str | None) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        yield from _pg_url(pg_reason)


@pytest.fixture
def vectors() -> Path:
    if not VECTORS.is_dir():
        pytest.skip(f"Merkle vectors not found at {VECTORS}")
    return VECTORS
