"""Persistence of the citizen desk: one interface, two engines chosen by the database URL.

`sqlite:///path.db` uses the standard library's sqlite3; `postgresql://...` uses psycopg 3 with a connection
pool. Every table of this room is prefixed `citizen_` and versioned in `citizen_schema_version`, so the room
can share a database with the broker without touching its tables. The SQL is written once with `?`
placeholders; the PostgreSQL engine rewrites them to `%s` (no statement here contains a literal `?` or `%`).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from civicmesh.store.base import CONNECTION_WAIT

SCHEMA_VERSION = 1

# Columns a caller may set on a request; anything else is rejected before SQL is built.
REQUEST_COLUMNS = (
    "token",
    "jurisdiction_id",
    "service_code",
    "service_name",
    "kind",
    "description",
    "state",
    "status_notes",
    "lat",
    "lon",
    "address_string",
    "address_id",
    "zipcode",
    "district",
    "media_url",
    "email",
    "phone",
    "first_name",
    "last_name",
    "device_id",
    "account_id",
    "api_key",
    "attributes",
    "lead_department",
    "co_departments",
    "dispatch_method",
    "confidence",
    "master_id",
    "service_notice",
    "requested_at",
    "updated_at",
    "expected_at",
    "dispatched_at",
    "accepted_at",
    "resolved_at",
    "closed_at",
    "satisfaction",
    "citizen_resolved",
    "visit_comment",
    "reminded_at",
    "escalation_level",
    "returned_by",
)
JSON_COLUMNS = {"attributes", "co_departments", "returned_by"}

_DDL = [
    "CREATE TABLE IF NOT EXISTS citizen_schema_version (version INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS citizen_api_keys (api_key TEXT PRIMARY KEY, client TEXT NOT NULL,"
    " per_hour INTEGER, created_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS citizen_requests ("
    " id {pk}, token TEXT NOT NULL UNIQUE, jurisdiction_id TEXT, service_code TEXT NOT NULL,"
    " service_name TEXT, kind TEXT, description TEXT, state TEXT NOT NULL, status_notes TEXT,"
    " lat {real}, lon {real}, address_string TEXT, address_id TEXT, zipcode TEXT, district TEXT,"
    " media_url TEXT, email TEXT, phone TEXT, first_name TEXT, last_name TEXT, device_id TEXT,"
    " account_id TEXT, api_key TEXT, attributes TEXT, lead_department TEXT, co_departments TEXT,"
    " dispatch_method TEXT, confidence {real}, master_id BIGINT, service_notice TEXT,"
    " requested_at TEXT NOT NULL, updated_at TEXT NOT NULL, expected_at TEXT, dispatched_at TEXT,"
    " accepted_at TEXT, resolved_at TEXT, closed_at TEXT, satisfaction INTEGER, citizen_resolved INTEGER,"
    " visit_comment TEXT, reminded_at TEXT, escalation_level INTEGER NOT NULL DEFAULT 0, returned_by TEXT)",
    "CREATE INDEX IF NOT EXISTS citizen_requests_requested ON citizen_requests (requested_at)",
    "CREATE INDEX IF NOT EXISTS citizen_requests_code ON citizen_requests (service_code, requested_at)",
    "CREATE INDEX IF NOT EXISTS citizen_requests_dept ON citizen_requests (lead_department, state)",
    "CREATE INDEX IF NOT EXISTS citizen_requests_key ON citizen_requests (api_key, requested_at)",
    "CREATE INDEX IF NOT EXISTS citizen_requests_master ON citizen_requests (master_id)",
    "CREATE TABLE IF NOT EXISTS citizen_request_events ("
    " id {pk}, request_id BIGINT NOT NULL, at TEXT NOT NULL, action TEXT NOT NULL, department TEXT,"
    " note TEXT)",
    "CREATE INDEX IF NOT EXISTS citizen_events_request ON citizen_request_events (request_id, id)",
]
_TABLES = ("citizen_request_events", "citizen_requests", "citizen_api_keys", "citizen_schema_version")


class Tx(Protocol):
    async def execute(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...


def _encode(row: dict[str, Any]) -> dict[str, Any]:
    unknown = set(row) - set(REQUEST_COLUMNS)
    if unknown:
        raise ValueError(f"unknown request columns: {sorted(unknown)}")
    return {
        k: (json.dumps(v, ensure_ascii=False) if k in JSON_COLUMNS and v is not None else v)
        for k, v in row.items()
    }


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in JSON_COLUMNS:
        if out.get(key) is not None:
            out[key] = json.loads(out[key])
    return out


def _in(column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
    return f"{column} IN ({', '.join('?' for _ in values)})", list(values)


class CitizenStore(ABC):
    """The citizen desk's store. Every write runs in one transaction; a failed write leaves nothing behind."""

    dialect: str = ""

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """An async context manager yielding a `Tx`; commits on success, rolls back on error."""

    @abstractmethod
    async def connect(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    def _ddl(self) -> list[str]:
        raise NotImplementedError

    async def migrate(self) -> None:
        async with self.transaction() as tx:
            for statement in self._ddl():
                await tx.execute(statement)
            rows = await tx.execute("SELECT version FROM citizen_schema_version")
            if not rows:
                await tx.execute("INSERT INTO citizen_schema_version (version) VALUES (?)", [SCHEMA_VERSION])
            elif rows[0]["version"] > SCHEMA_VERSION:
                raise RuntimeError(
                    f"citizen schema version {rows[0]['version']} is newer than this code "
                    f"({SCHEMA_VERSION}); upgrade civicmesh"
                )

    async def drop_all(self) -> None:
        """Remove this room's tables (tests and `civicmesh citizen reset`)."""
        async with self.transaction() as tx:
            for table in _TABLES:
                await tx.execute(f"DROP TABLE IF EXISTS {table}")

    # --- API keys ---------------------------------------------------------------------------------------
    async def add_api_key(self, api_key: str, client: str, per_hour: int | None, created_at: str) -> None:
        async with self.transaction() as tx:
            await tx.execute(
                "INSERT INTO citizen_api_keys (api_key, client, per_hour, created_at) VALUES (?, ?, ?, ?)",
                [api_key, client, per_hour, created_at],
            )

    async def get_api_key(self, api_key: str) -> dict[str, Any] | None:
        async with self.transaction() as tx:
            rows = await tx.execute("SELECT * FROM citizen_api_keys WHERE api_key = ?", [api_key])
        return rows[0] if rows else None

    async def count_requests_by_key(self, api_key: str, since: str) -> int:
        async with self.transaction() as tx:
            rows = await tx.execute(
                "SELECT COUNT(*) AS n FROM citizen_requests WHERE api_key = ? AND requested_at >= ?",
                [api_key, since],
            )
        return int(rows[0]["n"])

    # --- requests ---------------------------------------------------------------------------------------
    async def create_request(
        self, row: dict[str, Any], events: Sequence[tuple[str, str | None, str]]
    ) -> dict[str, Any]:
        data = _encode(row)
        columns = list(data)
        async with self.transaction() as tx:
            created = await tx.execute(
                f"INSERT INTO citizen_requests ({', '.join(columns)})"
                f" VALUES ({', '.join('?' for _ in columns)}) RETURNING *",
                [data[c] for c in columns],
            )
            for event in events:
                await self._add_event(tx, created[0]["id"], data["requested_at"], event)
        return _decode(created[0])

    async def update_request(
        self,
        request_id: int,
        changes: dict[str, Any],
        event: tuple[str, str | None, str] | None = None,
        children: dict[str, Any] | None = None,
        expect_state: Iterable[str] | None = None,
        expect: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Apply `changes` (and mirror `children` onto linked duplicates) in one transaction.

        With `expect_state`, the update happens only if the request is still in one of those states, so two
        departments acting at once cannot both move it; `expect` adds column == value guards (None: IS NULL),
        so two API workers supervising at once send one reminder, not two. None: the update did not apply.
        """
        data = _encode(changes)
        assignments = ", ".join(f"{c} = ?" for c in data)
        where, params = "id = ?", [*data.values(), request_id]
        if expect_state is not None:
            clause, values = _in("state", list(expect_state))
            where += " AND " + clause
            params += values
        for column, value in (expect or {}).items():
            if column not in REQUEST_COLUMNS:
                raise ValueError(f"unknown request column {column!r}")
            where += f" AND {column} IS NULL" if value is None else f" AND {column} = ?"
            params += [] if value is None else [value]
        async with self.transaction() as tx:
            updated = await tx.execute(
                f"UPDATE citizen_requests SET {assignments} WHERE {where} RETURNING *", params
            )
            if not updated:
                return None
            if event is not None:
                await self._add_event(
                    tx, request_id, str(data.get("updated_at") or updated[0]["updated_at"]), event
                )
            if children:
                child = _encode(children)
                await tx.execute(
                    f"UPDATE citizen_requests SET {', '.join(f'{c} = ?' for c in child)} WHERE master_id = ?",
                    [*child.values(), request_id],
                )
        return _decode(updated[0])

    async def get_request(self, request_id: int) -> dict[str, Any] | None:
        async with self.transaction() as tx:
            rows = await tx.execute("SELECT * FROM citizen_requests WHERE id = ?", [request_id])
        return _decode(rows[0]) if rows else None

    async def get_by_token(self, token: str) -> dict[str, Any] | None:
        async with self.transaction() as tx:
            rows = await tx.execute("SELECT * FROM citizen_requests WHERE token = ?", [token])
        return _decode(rows[0]) if rows else None

    async def query_requests(
        self,
        *,
        ids: Sequence[int] | None = None,
        service_codes: Sequence[str] | None = None,
        states: Sequence[str] | None = None,
        start: str | None = None,
        end: str | None = None,
        department: str | None = None,
        dispatch_method: str | None = None,
        master_id: int | None = None,
        only_masters: bool = False,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, values in (("id", ids), ("service_code", service_codes), ("state", states)):
            if values is not None:
                if not values:
                    return []
                clause, vals = _in(column, list(values))
                clauses.append(clause)
                params += vals
        for sql, value in (
            ("requested_at >= ?", start),
            ("requested_at <= ?", end),
            ("lead_department = ?", department),
            ("dispatch_method = ?", dispatch_method),
            ("master_id = ?", master_id),
        ):
            if value is not None:
                clauses.append(sql)
                params.append(value)
        if only_masters:
            clauses.append("master_id IS NULL")
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        async with self.transaction() as tx:
            rows = await tx.execute(
                f"SELECT * FROM citizen_requests{where} ORDER BY requested_at DESC, id DESC LIMIT ?",
                [*params, int(limit)],
            )
        return [_decode(r) for r in rows]

    async def duplicate_candidates(
        self,
        service_code: str,
        since: str,
        lat_min: float,
        lat_max: float,
        lon_min: float,
        lon_max: float,
        open_states: Sequence[str],
    ) -> list[dict[str, Any]]:
        state_clause, state_params = _in("state", list(open_states))
        async with self.transaction() as tx:
            rows = await tx.execute(
                "SELECT * FROM citizen_requests WHERE service_code = ? AND requested_at >= ?"
                " AND master_id IS NULL AND lat BETWEEN ? AND ? AND lon BETWEEN ? AND ? AND "
                + state_clause
                + " ORDER BY requested_at ASC, id ASC",
                [service_code, since, lat_min, lat_max, lon_min, lon_max, *state_params],
            )
        return [_decode(r) for r in rows]

    async def events(self, request_id: int) -> list[dict[str, Any]]:
        async with self.transaction() as tx:
            return await tx.execute(
                "SELECT at, action, department, note FROM citizen_request_events"
                " WHERE request_id = ? ORDER BY id",
                [request_id],
            )

    async def add_event(self, request_id: int, at: str, event: tuple[str, str | None, str]) -> None:
        async with self.transaction() as tx:
            await self._add_event(tx, request_id, at, event)

    @staticmethod
    async def _add_event(tx: Tx, request_id: int, at: str, event: tuple[str, str | None, str]) -> None:
        action, department, note = event
        await tx.execute(
            "INSERT INTO citizen_request_events (request_id, at, action, department, note)"
            " VALUES (?, ?, ?, ?, ?)",
            [request_id, at, action, department, note],
        )


class _SqliteTx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cursor = self._conn.execute(sql, list(params))
        rows = cursor.fetchall()
        return [dict(r) for r in rows]


class SqliteCitizenStore(CitizenStore):
    """SQLite engine. Calls are short and local, so they run on the event loop under one asyncio lock."""

    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    async def connect(self) -> None:
        if self.path not in ("", ":memory:"):
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path or ":memory:", isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=5000")
        self._conn = conn

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _ddl(self) -> list[str]:
        return [s.format(pk="INTEGER PRIMARY KEY AUTOINCREMENT", real="REAL") for s in _DDL]

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_SqliteTx]:
        if self._conn is None:
            raise RuntimeError("citizen store is not connected")
        async with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield _SqliteTx(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")


class _PgTx:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cursor = await self._conn.execute(sql.replace("?", "%s"), list(params))
        if cursor.description is None:
            return []
        return list(await cursor.fetchall())


class PostgresCitizenStore(CitizenStore):
    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = url
        self._pool: Any = None

    async def connect(self) -> None:
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool

        self._pool = AsyncConnectionPool(
            self.url, min_size=1, max_size=8, open=False, kwargs={"row_factory": dict_row, "autocommit": True},
            timeout=CONNECTION_WAIT)
        await self._pool.open(wait=True, timeout=10)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _ddl(self) -> list[str]:
        return [
            s.format(pk="BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", real="DOUBLE PRECISION")
            for s in _DDL
        ]

    async def migrate(self) -> None:
        # Two workers starting together must not race on CREATE TABLE: serialize with an advisory lock.
        async with self._pool.connection() as conn:
            await conn.execute("SELECT pg_advisory_lock(hashtext('citizen_schema'))")
            try:
                await super().migrate()
            finally:
                await conn.execute("SELECT pg_advisory_unlock(hashtext('citizen_schema'))")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_PgTx]:
        if self._pool is None:
            raise RuntimeError("citizen store is not connected")
        async with self._pool.connection() as conn, conn.transaction():
            yield _PgTx(conn)


def open_citizen_store(database_url: str) -> CitizenStore:
    """Pick the engine from the URL: sqlite:///relative.db, sqlite:////abs.db, sqlite:// (memory), postgresql://"""
    scheme = urlsplit(database_url).scheme
    if scheme == "sqlite":
        path = database_url[len("sqlite://") :]
        path = path[1:] if path.startswith("/") else path
        return SqliteCitizenStore(path or ":memory:")
    if scheme in ("postgresql", "postgres"):
        return PostgresCitizenStore(database_url)
    raise ValueError(f"unsupported database URL scheme {scheme!r}: use sqlite:/// or postgresql://")
