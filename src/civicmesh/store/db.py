"""The one database seam: every room reaches the database through one `Database` per process.

`Database.from_url` is the only parser of a database URL. On SQLite every write runs on one writer connection
in one writer thread (the entity store's group commit and the rooms' transactions take turns on it) and reads
run on per-thread reader connections; on PostgreSQL one connection pool serves the whole process.

    async with db.transaction() as tx:
        rows = await tx.fetch("SELECT ... WHERE id = ?", [x])
        await tx.execute("UPDATE ...", [...])
        tx.emit("citizen.dispatched", "42", {...})   # committed with the change, or not at all

SQL is written with `?` placeholders; the PostgreSQL side rewrites them. Change events go into the outbox only
here (`tx.emit`, `tx.emit_many`, `write_outbox`), under the outbox lock, and the listeners (the relay) are woken
after the commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import signal
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson
import psycopg
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

T = TypeVar("T")

# PostgreSQL advisory lock taken by every transaction that writes outbox rows, so rows commit in sequence order
# (the relay reads by sequence number and must never see seq N+1 committed before N).
OUTBOX_LOCK = 7_311_001
# Seconds a request waits for a pooled PostgreSQL connection before it is answered 503 (see base.unavailable).
CONNECTION_WAIT = 10.0
DEFAULT_POOL_SIZE = 12  # before the seam: 8 (entities) + 8 (exchange) + 8 (citizen) + 4 (ledger) = 28
# Test hook: with CIVICMESH_CRASH_AT=<point>, the process kills itself (SIGKILL) at that point of the first
# transaction that emits an event of a kind starting with CIVICMESH_CRASH_KIND (see `_crash_point`).
CRASH_ENV = "CIVICMESH_CRASH_AT"

# (kind, subject, data, tenant)
Event = tuple[str, str, dict[str, Any], str]


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _crash_point(point: str, events: Sequence[Event]) -> None:
    """Die here, as a power cut would, when a test asked for it (never set outside tests)."""
    if os.environ.get(CRASH_ENV) != point:
        return
    prefix = os.environ.get("CIVICMESH_CRASH_KIND", "")
    if any(kind.startswith(prefix) for kind, *_ in events):
        os.kill(os.getpid(), signal.SIGKILL)


def change_event(change: Any, tenant: str) -> Event:
    """The outbox row of one entity change: before and after state (subscriptions' showChanges and the gate's
    masking read them), the attributes it touched, and the owner it released when it deleted the entity."""
    data: dict[str, Any] = {"before": change.before, "after": change.after, "attributes": change.attributes}
    owner = getattr(change, "owner", None)
    if owner is not None:
        data["owner"] = owner
    return (change.kind, change.entity_id, data, tenant)


def _outbox_rows(events: Iterable[Event], at: str) -> list[tuple[Any, ...]]:
    return [(tenant, kind, subject, at, orjson.dumps(data)) for kind, subject, data, tenant in events]


_OUTBOX_INSERT = "INSERT INTO outbox (tenant, kind, subject, at, data) VALUES (?, ?, ?, ?, ?)"


def write_outbox(conn: sqlite3.Connection, events: Sequence[Event]) -> None:
    """Outbox rows on the SQLite writer, inside the caller's transaction (BEGIN IMMEDIATE holds the file's write
    lock, which orders the rows)."""
    if events:
        conn.executemany(_OUTBOX_INSERT, _outbox_rows(events, now_text()))


async def write_outbox_pg(conn: psycopg.AsyncConnection[Any], events: Sequence[Event]) -> None:
    """Outbox rows on PostgreSQL inside the caller's transaction, under the outbox lock."""
    if events:
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (OUTBOX_LOCK,))
        async with conn.cursor() as cur:
            await cur.executemany(pg(_OUTBOX_INSERT), _outbox_rows(events, now_text()))


def pg(statement: str) -> str:
    """`?` placeholders to psycopg's `%s` (a literal `%` doubled)."""
    return statement.replace("%", "%%").replace("?", "%s")


@dataclass(frozen=True)
class Target:
    """What a database URL names: the engine and the SQLite path or PostgreSQL URL."""

    engine: str  # "sqlite" or "postgres"
    location: str

    @classmethod
    def parse(cls, url: str) -> Target:
        if url in ("sqlite://", "sqlite:///:memory:"):
            return cls("sqlite", ":memory:")
        if url.startswith("sqlite:///"):
            return cls("sqlite", url[len("sqlite:///"):] or ":memory:")
        if url.startswith(("postgresql://", "postgres://")):
            return cls("postgres", url.replace("postgres://", "postgresql://", 1))
        raise ValueError(f"unsupported database URL {url!r}: use sqlite:///path.db or postgresql://user@host/db")


class Tx:
    """One transaction: statements run in order; events are buffered and written just before the commit."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def execute(self, statement: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        raise NotImplementedError

    async def execute_many(self, statement: str, rows: Sequence[Sequence[Any]]) -> int:
        raise NotImplementedError

    async def fetch(self, statement: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run one statement (a SELECT, or a write with RETURNING); its rows as dicts."""
        raise NotImplementedError

    async def rows(self, statement: str, params: Sequence[Any] = (), *,
                   many: bool = False) -> tuple[list[tuple[Any, ...]], int]:
        """Run one statement (with `many`, once per row of `params`); its rows as tuples and its row count."""
        raise NotImplementedError

    def emit(self, kind: str, subject: str, data: dict[str, Any], tenant: str = "") -> None:
        """A change event committed with this transaction, or not at all."""
        self.events.append((kind, subject, data, tenant))

    def emit_many(self, changes: Iterable[Any], tenant: str = "") -> None:
        """Entity changes (store.base.Change) as events keeping each entity's before and after state."""
        self.events.extend(change_event(c, tenant) for c in changes)


class Database:
    """The process's database: open once, share everywhere, close once."""

    engine = ""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._listeners: list[Callable[[], None]] = []
        self.loop: asyncio.AbstractEventLoop | None = None  # where it was opened: the sync bridge runs there
        self._private_loop: threading.Thread | None = None

    @staticmethod
    def from_url(url: str, *, pool_size: int = DEFAULT_POOL_SIZE) -> Database:
        target = Target.parse(url)
        if target.engine == "sqlite":
            return SqliteDatabase(target)
        return PostgresDatabase(target, pool_size=pool_size)

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Called (on the event loop) after every commit that wrote outbox rows."""
        self._listeners.append(callback)

    def notify(self) -> None:
        for callback in self._listeners:
            callback()

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Tx]:
        raise NotImplementedError

    async def fetch(self, statement: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """One read outside any transaction (SQLite: on a reader connection, never waiting for the writer)."""
        raise NotImplementedError

    async def execute(self, statement: str, params: Sequence[Any] = ()) -> int:
        async with self.transaction() as tx:
            return await tx.execute(statement, params)

    async def fetch_rows(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One read outside any transaction; its rows as tuples."""
        raise NotImplementedError

    # -- the synchronous bridge: for code that runs in worker threads (the ledger) ----------------------------
    @classmethod
    def open_sync(cls, url: str, *, pool_size: int = 4) -> Database:
        """An open Database for synchronous tools (CLI commands, tests, benches): its event loop runs in a
        thread of its own; `close_sync` stops it."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="database-loop", daemon=True)
        thread.start()
        db = cls.from_url(url, pool_size=pool_size)
        db._private_loop = thread
        try:
            asyncio.run_coroutine_threadsafe(db.open(), loop).result()
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            raise
        return db

    def close_sync(self) -> None:
        """Close from a synchronous caller; stops the private loop of `open_sync`."""
        if self.loop is None:
            return
        loop = self.loop
        self.call(self.close)
        if self._private_loop is not None:
            loop.call_soon_threadsafe(loop.stop)
            self._private_loop.join()
            self._private_loop = None
            loop.close()

    def call(self, step: Callable[[], Awaitable[T]]) -> T:
        """Run `step()` on the database's loop and wait for it, from another thread."""
        loop = self.loop
        if loop is None:
            raise RuntimeError("the database is not open")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise RuntimeError("a synchronous database call on the event loop would block it: use a worker thread")

        async def run() -> T:
            return await step()
        return asyncio.run_coroutine_threadsafe(run(), loop).result()

    @contextlib.contextmanager
    def sync_transaction(self) -> Iterator[SyncCursor]:
        """`transaction()` for synchronous code in a worker thread; the cursor speaks DB-API with `?`."""
        manager = self.transaction()
        tx = self.call(manager.__aenter__)
        try:
            yield SyncCursor(self, tx)
        except BaseException as exc:
            self.call(functools.partial(manager.__aexit__, type(exc), exc, exc.__traceback__))
            raise
        self.call(lambda: manager.__aexit__(None, None, None))

    @contextlib.contextmanager
    def sync_reader(self) -> Iterator[SyncCursor]:
        """Single statements outside any transaction, for synchronous code."""
        yield SyncCursor(self, None)

    def read_now(self, statement: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """A read from a synchronous caller (SQLite: this thread's reader connection, no hop)."""
        return self.call(lambda: self.fetch_rows(statement, params))

    # -- migrations: one table keyed by (room, version) -----------------------------------------------------
    async def migrate(self, room: str, steps: Sequence[Sequence[str]], *,
                      legacy: str | None = None) -> int:
        """Run the steps of `room` not yet applied, each in one transaction with its version row. `legacy`: the
        room's old `<room>_schema_version` table, whose version is taken over the first time. The version
        reached."""
        async with self.transaction() as tx:
            await self._lock_migrations(tx)
            await tx.execute("CREATE TABLE IF NOT EXISTS schema_migrations (room TEXT NOT NULL, "
                             "version INTEGER NOT NULL, applied_at TEXT NOT NULL, PRIMARY KEY (room, version))")
            rows = await tx.fetch("SELECT max(version) AS v FROM schema_migrations WHERE room = ?", [room])
            current = int(rows[0]["v"] or 0)
            if current == 0 and legacy is not None and await self._has_table(tx, legacy):
                # A database made before the migration table: its tables are version 1 (or later), as recorded.
                old = await tx.fetch(f"SELECT max(version) AS v FROM {legacy}")
                current = int(old[0]["v"] or 0)
                await tx.execute_many("INSERT INTO schema_migrations (room, version, applied_at) VALUES (?, ?, ?)",
                                      [(room, v, now_text()) for v in range(1, current + 1)])
                await tx.execute(f"DROP TABLE {legacy}")
            if current > len(steps):
                raise RuntimeError(f"{room} schema version {current} is newer than this code ({len(steps)}); "
                                   "upgrade civicmesh")
            for version, statements in enumerate(steps, start=1):
                if version <= current:
                    continue
                for statement in statements:
                    await tx.execute(statement)
                await tx.execute("INSERT INTO schema_migrations (room, version, applied_at) VALUES (?, ?, ?)",
                                 [room, version, now_text()])
                current = version
        return current

    def typed(self, statements: Iterable[str]) -> list[str]:
        """DDL written once with {pk} (an auto-numbered key) and {real} (a float column), for this engine."""
        if self.engine == "sqlite":
            types = {"pk": "INTEGER PRIMARY KEY AUTOINCREMENT", "real": "REAL"}
        else:
            types = {"pk": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", "real": "DOUBLE PRECISION"}
        return [s.format(**types) for s in statements]

    async def drop_room(self, room: str, tables: Iterable[str]) -> None:
        """Remove a room's tables and its migration rows (tests and resets)."""
        async with self.transaction() as tx:
            for table in tables:
                await tx.execute(f"DROP TABLE IF EXISTS {table}")
            if await self._has_table(tx, "schema_migrations"):
                await tx.execute("DELETE FROM schema_migrations WHERE room = ?", [room])

    async def versions(self) -> dict[str, int]:
        """Each room's schema version (for `civicmesh db upgrade`)."""
        async with self.transaction() as tx:
            if not await self._has_table(tx, "schema_migrations"):
                return {}
            rows = await tx.fetch("SELECT room, max(version) AS v FROM schema_migrations GROUP BY room ORDER BY room")
        return {r["room"]: int(r["v"]) for r in rows}

    async def backup(self, destination: str) -> None:
        """A consistent copy of the whole database in `destination`."""
        raise NotImplementedError

    async def restore(self, source: str) -> None:
        """Replace the database's content with a copy made by `backup` (no server may be using it)."""
        raise NotImplementedError

    async def _lock_migrations(self, tx: Tx) -> None:
        """Two workers starting together must not both run a room's steps (SQLite: BEGIN IMMEDIATE already)."""

    async def _has_table(self, tx: Tx, name: str) -> bool:
        raise NotImplementedError


class SyncCursor:
    """The part of a DB-API cursor synchronous callers use, over a transaction (or single reads)."""

    def __init__(self, db: Database, tx: Tx | None) -> None:
        self._db = db
        self._tx = tx
        self._found: list[tuple[Any, ...]] = []
        self.rowcount = -1

    def execute(self, statement: str, params: Sequence[Any] = ()) -> None:
        tx = self._tx
        if tx is None:
            self._found, self.rowcount = self._db.read_now(statement, params), -1
            return
        self._found, self.rowcount = self._db.call(lambda: tx.rows(statement, params))

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        tx = self._tx
        if tx is None:
            raise RuntimeError("writes need sync_transaction()")
        self._found, self.rowcount = self._db.call(lambda: tx.rows(statement, rows, many=True))

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._found.pop(0) if self._found else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        found, self._found = self._found, []
        return found


# ================================================================================================ SQLite


class _SqliteTx(Tx):
    def __init__(self, db: SqliteDatabase, conn: sqlite3.Connection) -> None:
        super().__init__()
        self._db = db
        self.conn = conn

    async def execute(self, statement: str, params: Sequence[Any] = ()) -> int:
        return await self._db.on_writer(lambda: self.conn.execute(statement, list(params)).rowcount)

    async def execute_many(self, statement: str, rows: Sequence[Sequence[Any]]) -> int:
        return await self._db.on_writer(lambda: self.conn.executemany(statement, rows).rowcount)

    async def fetch(self, statement: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return await self._db.on_writer(lambda: _dicts(self.conn.execute(statement, list(params))))

    async def rows(self, statement: str, params: Sequence[Any] = (), *,
                   many: bool = False) -> tuple[list[tuple[Any, ...]], int]:
        return await self._db.on_writer(lambda: _tuples(self.conn, statement, params, many))


def _tuples(conn: sqlite3.Connection, statement: str, params: Any,
            many: bool) -> tuple[list[tuple[Any, ...]], int]:
    cursor = conn.executemany(statement, params) if many else conn.execute(statement, list(params))
    found = cursor.fetchall() if cursor.description is not None else []
    return [tuple(r) for r in found], cursor.rowcount


def _dicts(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    if cursor.description is None:
        return []
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


class SqliteDatabase(Database):
    """One file in WAL mode. One writer connection on one thread; transactions and the entity store's group
    commit take turns on it under one asyncio lock, so no second connection ever writes the file."""

    engine = "sqlite"

    def __init__(self, target: Target, *, readers: int = 2) -> None:
        super().__init__(target)
        self.path = target.location
        self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._reader_pool = ThreadPoolExecutor(readers, thread_name_prefix="sqlite-reader")
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self.writer: sqlite3.Connection | None = None
        self.writer_lock = asyncio.Lock()
        self._setups: list[Callable[[sqlite3.Connection], None]] = []
        self._opened = False

    def on_connect(self, setup: Callable[[sqlite3.Connection], None]) -> None:
        """Run `setup` on every connection (the entity store registers its SQL functions)."""
        self._setups.append(setup)

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA cache_size=-65536")
        conn.execute("PRAGMA mmap_size=268435456")
        for setup in self._setups:
            setup(conn)
        return conn

    def reader(self) -> sqlite3.Connection:
        """This thread's reader connection."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.connect()
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    async def open(self) -> None:
        if self._opened:
            return
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)

        def setup() -> None:
            self.writer = self.connect()
        self.loop = asyncio.get_running_loop()
        await self.loop.run_in_executor(self._writer_pool, setup)
        self._opened = True

    async def close(self) -> None:
        if not self._opened:
            return
        self._opened = False

        def shut() -> None:
            if self.writer is not None:
                self.writer.close()
                self.writer = None
        await asyncio.get_running_loop().run_in_executor(self._writer_pool, shut)
        self._writer_pool.shutdown(wait=True)
        self._reader_pool.shutdown(wait=True)
        with self._readers_lock:
            for conn in self._readers:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._readers.clear()

    async def on_writer(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the writer thread (the caller holds `writer_lock`)."""
        return await asyncio.get_running_loop().run_in_executor(self._writer_pool, fn)

    async def run_writer(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(writer)` on the writer thread, in turn with every other write."""
        async with self.writer_lock:
            conn = self.writer
            assert conn is not None, "the database is not open"
            return await self.on_writer(lambda: fn(conn))

    async def run_reader(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._reader_pool, lambda: fn(self.reader()))

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self.writer_lock:
            conn = self.writer
            assert conn is not None, "the database is not open"
            await self.on_writer(lambda: conn.execute("BEGIN IMMEDIATE"))
            tx = _SqliteTx(self, conn)
            try:
                yield tx
                await self.on_writer(lambda: self._commit(conn, tx.events))
            except BaseException:
                await self.on_writer(lambda: conn.in_transaction and conn.execute("ROLLBACK"))
                raise
        _crash_point("after-commit", tx.events)
        if tx.events:
            self.notify()

    @staticmethod
    def _commit(conn: sqlite3.Connection, events: list[Event]) -> None:
        write_outbox(conn, events)
        _crash_point("before-commit", events)
        conn.execute("COMMIT")

    async def fetch(self, statement: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return await self.run_reader(lambda c: _dicts(c.execute(statement, list(params))))

    async def fetch_rows(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await self.run_reader(lambda c: [tuple(r) for r in c.execute(statement, list(params))])

    def read_now(self, statement: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.reader().execute(statement, list(params))]

    async def _has_table(self, tx: Tx, name: str) -> bool:
        return bool(await tx.fetch("SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = ?", [name]))

    async def backup(self, destination: str) -> None:
        """A consistent copy of the live file (SQLite's online backup API), taken between writes."""
        def run(conn: sqlite3.Connection) -> None:
            target = sqlite3.connect(destination)
            try:
                conn.backup(target)
            finally:
                target.close()
        await self.run_writer(run)

    async def restore(self, source: str) -> None:
        """Copy a backup file page by page over the open database, on the writer (readers see the old or the new
        content, never a mix)."""
        if not Path(source).is_file():
            raise FileNotFoundError(f"no backup file {source}")

        def run(conn: sqlite3.Connection) -> None:
            origin = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
            try:
                origin.backup(conn)
            finally:
                origin.close()
        await self.run_writer(run)


# ============================================================================================ PostgreSQL


class _PgTx(Tx):
    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        super().__init__()
        self.conn = conn

    async def execute(self, statement: str, params: Sequence[Any] = ()) -> int:
        cur = await self.conn.execute(pg(statement), list(params))
        return max(cur.rowcount, 0)

    async def execute_many(self, statement: str, rows: Sequence[Sequence[Any]]) -> int:
        if not rows:
            return 0
        async with self.conn.cursor() as cur:
            await cur.executemany(pg(statement), rows)
            return max(cur.rowcount, 0)

    async def fetch(self, statement: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(pg(statement), list(params))
            return [] if cur.description is None else list(await cur.fetchall())

    async def rows(self, statement: str, params: Sequence[Any] = (), *,
                   many: bool = False) -> tuple[list[tuple[Any, ...]], int]:
        return await _pg_rows(self.conn, statement, params, many)


async def _pg_rows(conn: psycopg.AsyncConnection[Any], statement: str, params: Any,
                   many: bool) -> tuple[list[tuple[Any, ...]], int]:
    async with conn.cursor() as cur:
        if many:
            if not params:
                return [], 0
            await cur.executemany(pg(statement), params)
        else:
            await cur.execute(pg(statement), list(params))
        found = await cur.fetchall() if cur.description is not None else []
        return [tuple(r) for r in found], cur.rowcount


class PostgresDatabase(Database):
    """One connection pool per process; a transaction holds one pooled connection."""

    engine = "postgres"

    def __init__(self, target: Target, *, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        super().__init__(target)
        self.url = target.location
        # JIT off: its compile time (10-12 ms, paid again at every execution, prepared or not) is larger than
        # the statements it would speed up. A history aggregation whose row estimate crossed jit_above_cost took
        # 190 ms instead of 2 ms.
        # Added to the URL's own options (a search_path there must survive).
        options = f"{conninfo_to_dict(self.url).get('options') or ''} -c jit=off".strip()
        self.pool = AsyncConnectionPool(self.url, min_size=1, max_size=pool_size, open=False,
                                        kwargs={"autocommit": True, "options": options},
                                        timeout=CONNECTION_WAIT)
        self._opened = False

    async def open(self) -> None:
        if self._opened:
            return
        await ensure_database(self.url)  # before the pool's first connection (finding 18)
        await self.pool.open(wait=True, timeout=30)
        self.loop = asyncio.get_running_loop()
        self._opened = True

    async def close(self) -> None:
        if self._opened:
            self._opened = False
            await self.pool.close()

    async def dedicated(self) -> psycopg.AsyncConnection[Any]:
        """A connection outside the pool, for a session-long advisory lock (the relay's)."""
        return await psycopg.AsyncConnection.connect(self.url, autocommit=True)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self.pool.connection() as conn:
            async with conn.transaction():
                tx = _PgTx(conn)
                yield tx
                await write_outbox_pg(conn, tx.events)
                _crash_point("before-commit", tx.events)
            _crash_point("after-commit", tx.events)
        if tx.events:
            self.notify()

    async def fetch(self, statement: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(pg(statement), list(params))
            return [] if cur.description is None else list(await cur.fetchall())

    async def fetch_rows(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with self.pool.connection() as conn:
            return (await _pg_rows(conn, statement, params, False))[0]

    async def backup(self, destination: str) -> None:
        """pg_dump's custom format (compressed, restorable table by table)."""
        await _run_tool("pg_dump", "--format=custom", "--no-owner", f"--file={destination}", f"--dbname={self.url}")

    async def restore(self, source: str) -> None:
        """pg_restore over the database: every object in the dump is dropped and created again."""
        if not Path(source).is_file():
            raise FileNotFoundError(f"no backup file {source}")
        # The pool's connections would hold locks DROP TABLE waits for: it closes for good (a closed pool cannot
        # open again), so a restore ends this Database's life.
        await self.close()
        await _run_tool("pg_restore", "--clean", "--if-exists", "--no-owner", "--single-transaction",
                        f"--dbname={self.url}", source)

    async def _lock_migrations(self, tx: Tx) -> None:
        await tx.execute("SELECT pg_advisory_xact_lock(7311000)")

    async def _has_table(self, tx: Tx, name: str) -> bool:
        rows = await tx.fetch("SELECT to_regclass(?) IS NOT NULL AS x", [name])
        return bool(rows[0]["x"])


async def _run_tool(*args: str) -> None:
    """Run a PostgreSQL client tool; its error output becomes the exception's message."""
    process = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    _, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({process.returncode}): {err.decode(errors='replace').strip()}")


async def ensure_database(url: str) -> None:
    """Create the database named in the URL when the server does not have it yet."""
    try:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        await conn.close()
        return
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise
    match = re.match(r"^(postgresql://[^/]*)/([^?]+)(\?.*)?$", url)
    if not match:
        raise ValueError(f"cannot tell the database name in {url!r}")
    admin = f"{match.group(1)}/postgres{match.group(3) or ''}"
    conn = await psycopg.AsyncConnection.connect(admin, autocommit=True)
    try:
        await conn.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(match.group(2))))
    except psycopg.errors.DuplicateDatabase:
        pass
    finally:
        await conn.close()
