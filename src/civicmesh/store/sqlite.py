"""The embedded engine: one SQLite file in WAL mode. One writer thread, a few reader threads."""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import IO, Any, TypeVar

import orjson

from civicmesh import regex
from civicmesh.errors import Problem
from civicmesh.events import ChangeEvent
from civicmesh.ngsild.model import now_iso
from civicmesh.store.base import (
    DEFAULT_TENANT,
    Change,
    DocumentUpdate,
    EntityQuery,
    WriteOutcome,
    WritePlan,
    geometries,
    index_rows,
)
from civicmesh.store.db import Database, SqliteDatabase, Target, change_event, write_outbox
from civicmesh.store.geo import bbox_of, geo_predicate
from civicmesh.store.sql import QueryCompiler

T = TypeVar("T")

MIGRATIONS: list[list[str]] = [
    [  # 1: entities, their types, the attribute index, geometries, the outbox and consumer cursors
        "CREATE TABLE tenants (name TEXT PRIMARY KEY, created_at TEXT NOT NULL)",
        "CREATE TABLE entities (eid INTEGER PRIMARY KEY, tenant TEXT NOT NULL, id TEXT NOT NULL, "
        "doc BLOB NOT NULL, scopes TEXT, created_at TEXT NOT NULL, modified_at TEXT NOT NULL, "
        "UNIQUE (tenant, id))",
        "CREATE INDEX entities_tenant_eid ON entities (tenant, eid)",
        "CREATE TABLE terms (tkey INTEGER PRIMARY KEY, iri TEXT NOT NULL UNIQUE)",
        "CREATE TABLE entity_types (eid INTEGER NOT NULL, tkey INTEGER NOT NULL, PRIMARY KEY (tkey, eid)) "
        "WITHOUT ROWID",
        "CREATE INDEX entity_types_eid ON entity_types (eid)",
        "CREATE TABLE attr_keys (akey INTEGER PRIMARY KEY, attr TEXT NOT NULL, path TEXT NOT NULL, "
        "UNIQUE (attr, path))",
        "CREATE TABLE attr_index (eid INTEGER NOT NULL, akey INTEGER NOT NULL, atype TEXT, kind TEXT NOT NULL, "
        "num REAL, txt TEXT)",
        # Queries probe per entity through (eid, akey); value-ordered indexes would only slow writes here.
        "CREATE INDEX attr_index_eid ON attr_index (eid, akey)",
        "CREATE TABLE geo (gid INTEGER PRIMARY KEY, eid INTEGER NOT NULL, akey INTEGER NOT NULL, "
        "geojson TEXT NOT NULL)",
        "CREATE INDEX geo_eid ON geo (eid)",
        "CREATE VIRTUAL TABLE geo_rtree USING rtree(gid, minx, maxx, miny, maxy)",
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT NOT NULL, kind TEXT NOT NULL, "
        "subject TEXT NOT NULL, at TEXT NOT NULL, data BLOB NOT NULL)",
        "CREATE TABLE cursors (name TEXT PRIMARY KEY, seq INTEGER NOT NULL)",
    ],
    [  # 2: point coordinates, so near-queries on points are measured in SQL instead of a Python callback
        "ALTER TABLE geo ADD COLUMN px REAL",
        "ALTER TABLE geo ADD COLUMN py REAL",
    ],
    [  # 3: small JSON documents the broker keeps besides entities (context-source registrations, contexts)
        "CREATE TABLE documents (tenant TEXT NOT NULL, kind TEXT NOT NULL, id TEXT NOT NULL, body BLOB NOT NULL, "
        "created_at TEXT NOT NULL, PRIMARY KEY (tenant, kind, id))",
    ],
    [  # 4: notifications due to subscribers, kept until delivered (retried with backoff, never dropped)
        "CREATE TABLE notification_queue (nid INTEGER PRIMARY KEY, tenant TEXT NOT NULL, subscription TEXT NOT NULL, "
        "dedupe TEXT NOT NULL UNIQUE, payload BLOB NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, "
        "due_at REAL NOT NULL, last_error TEXT)",
        "CREATE INDEX notification_queue_due ON notification_queue (due_at)",
    ],
    [  # 5: attribute history for the temporal API, fed by the change events
        "CREATE TABLE history (hid INTEGER PRIMARY KEY, tenant TEXT NOT NULL, entity_id TEXT NOT NULL, "
        "attr TEXT NOT NULL, instance_id TEXT NOT NULL, dataset_id TEXT, observed_at TEXT, created_at TEXT NOT NULL, "
        "modified_at TEXT NOT NULL, deleted_at TEXT, num REAL, value BLOB)",
        "CREATE INDEX history_observed ON history (tenant, entity_id, attr, observed_at)",
        "CREATE INDEX history_modified ON history (tenant, entity_id, attr, modified_at)",
        "CREATE UNIQUE INDEX history_instance ON history (tenant, entity_id, instance_id)",
        "CREATE TABLE history_entities (tenant TEXT NOT NULL, entity_id TEXT NOT NULL, types TEXT NOT NULL, "
        "created_at TEXT NOT NULL, deleted_at TEXT, PRIMARY KEY (tenant, entity_id))",
    ],
    [  # 6: observedAt as epoch seconds, so aggregation periods are arithmetic, answered from one covering index
        "ALTER TABLE history ADD COLUMN observed_s REAL",
        "UPDATE history SET observed_s = CAST(strftime('%s', observed_at) AS INTEGER) + "
        "CAST(substr(observed_at, 20, 7) AS REAL) WHERE observed_at IS NOT NULL",
        "CREATE INDEX history_observed_num ON history (tenant, entity_id, attr, observed_s, num)",
    ],
]

async def migrate(db: Database) -> int:
    """The entity store's tables (room `store`; before the migration table, `schema_version`)."""
    return await db.migrate("store", MIGRATIONS, legacy="schema_version")


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error) on the autocommit writer connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        self.conn.execute("COMMIT" if error is None else "ROLLBACK")


EARTH_RADIUS_M = 6_371_008.8  # the mean radius the Python geo predicates use too


def _haversine_sql(lon: float, lat: float) -> str:
    lon_r, lat_r = math.radians(lon), math.radians(lat)
    return (f"(2 * {EARTH_RADIUS_M!r} * asin(sqrt(pow(sin((radians(g.py) - {lat_r!r}) / 2), 2) + "
            f"{math.cos(lat_r)!r} * cos(radians(g.py)) * pow(sin((radians(g.px) - {lon_r!r}) / 2), 2))))")


def _regexp(pattern: str, value: object) -> bool:
    # RE2, not `re`: linear time, so a hostile idPattern or q cannot hold the GIL inside SQLite (issue 13, 9).
    return isinstance(value, str) and regex.search(pattern, value)


class SqliteDialect:
    def __init__(self, geo_queries: dict[str, Any]) -> None:
        self._geo_queries = geo_queries

    # Correlated probes must use the (eid, akey) index: one lookup per candidate entity, in eid order, so a
    # LIMIT stops the scan early. Left alone, the planner prefers range scans over (akey, value).
    attr_index = "attr_index a INDEXED BY attr_index_eid"
    probe_end = ""

    def type_filter(self, n: int) -> str:
        # The unary + keeps SQLite scanning entities in eid order (so LIMIT stops early) and using the subquery
        # as a membership test, built once, instead of driving the scan from it and sorting afterwards.
        return f"+e.eid IN (SELECT eid FROM entity_types WHERE tkey IN ({','.join('?' * n)}))"

    def regex(self, column: str) -> str:
        return f"{column} REGEXP ?"

    def geo_condition(self, query: Any, akey: int, params: list[Any]) -> str:
        qid = uuid.uuid4().hex
        self._geo_queries[qid] = query
        box = bbox_of(query)
        exact = "geo_match(?, g.geojson)"
        if query.relation == "near":
            # Stored points are measured in SQL; other geometries go through the exact Python predicate.
            lon, lat = query.geometry.x, query.geometry.y
            distance = _haversine_sql(lon, lat)
            limits = []
            if query.max_distance is not None:
                limits.append(f"{distance} <= {float(query.max_distance)!r}")
            if query.min_distance is not None:
                limits.append(f"{distance} >= {float(query.min_distance)!r}")
            exact = f"(CASE WHEN g.px IS NULL THEN geo_match(?, g.geojson) ELSE {' AND '.join(limits)} END)"
        if box is None:
            params.extend([akey, qid])
            return f"e.eid IN (SELECT g.eid FROM geo g WHERE g.akey = ? AND {exact})"
        minx, miny, maxx, maxy = box
        params.extend([maxx, minx, maxy, miny, akey, qid])
        return ("e.eid IN (SELECT g.eid FROM geo_rtree r JOIN geo g ON g.gid = r.gid WHERE r.minx <= ? AND "
                f"r.maxx >= ? AND r.miny <= ? AND r.maxy >= ? AND g.akey = ? AND {exact})")


class SqliteStore:
    engine = "sqlite"

    def __init__(self, db: SqliteDatabase | str) -> None:
        # A path (tests, benches) makes a Database of the store's own; the platform passes its shared one.
        self.owns_db = isinstance(db, str)
        self.db = SqliteDatabase(Target("sqlite", db)) if isinstance(db, str) else db
        self.path = self.db.path
        self._akeys: dict[tuple[str, str], int] = {}
        self._tkeys: dict[str, int] = {}
        self._geo_queries: dict[str, Any] = {}
        self._relay_lock: IO[str] | None = None  # the open lock file while this process relays the outbox
        self._pending: list[Any] = []
        self._pending_lock = threading.Lock()
        self._flush_scheduled = False
        self._flushes: set[asyncio.Future[None]] = set()
        # SQL run for each deleted entity in the deleting transaction; a row it returns is recorded as the
        # entity's owner in the deletion event (the exchange releases ownership this way).
        self.on_delete: list[str] = []
        self._compiler = QueryCompiler(SqliteDialect(self._geo_queries), self._akey_lookup, self._tkey_lookup)
        self.regex_seconds = 5.0  # unused here: RE2 matches in linear time (see store.interface)
        self.db.on_connect(self._setup_connection)

    # -- connections -------------------------------------------------------------------------------------
    def _setup_connection(self, conn: sqlite3.Connection) -> None:
        conn.create_function("regexp", 2, _regexp, deterministic=True)
        conn.create_function("geo_match", 2, self._geo_match)

    @property
    def _writer(self) -> sqlite3.Connection | None:
        return self.db.writer

    def _reader(self) -> sqlite3.Connection:
        return self.db.reader()

    def _geo_match(self, qid: str, geojson: str) -> bool:
        query = self._geo_queries.get(qid)
        return query is not None and geo_predicate(query, geojson)

    async def _in_writer(self, fn: Callable[[], T]) -> T:
        return await self.db.run_writer(lambda _: fn())

    async def _in_reader(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self.db.run_reader(fn)

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Called (on the event loop) after every commit that wrote outbox rows."""
        self.db.add_listener(callback)

    async def open(self) -> None:
        await self.db.open()
        await migrate(self.db)

        def load() -> None:
            assert self._writer is not None
            for tkey, iri in self._writer.execute("SELECT tkey, iri FROM terms"):
                self._tkeys[iri] = tkey
            for akey, attr, path in self._writer.execute("SELECT akey, attr, path FROM attr_keys"):
                self._akeys[(attr, path)] = akey

        await self._in_writer(load)

    async def close(self) -> None:
        lock = self._relay_lock
        if lock is not None:
            lock.close()  # releases the flock
            self._relay_lock = None
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
        if self.owns_db:
            await self.db.close()

    # -- interning ---------------------------------------------------------------------------------------
    def _akey_lookup(self, attr: str, path: str) -> int | None:
        key = self._akeys.get((attr, path))
        if key is None:
            row = self._reader().execute("SELECT akey FROM attr_keys WHERE attr = ? AND path = ?",
                                         (attr, path)).fetchone()
            if row:
                key = self._akeys[(attr, path)] = row[0]
        return key

    def _tkey_lookup(self, iri: str) -> int | None:
        key = self._tkeys.get(iri)
        if key is None:
            row = self._reader().execute("SELECT tkey FROM terms WHERE iri = ?", (iri,)).fetchone()
            if row:
                key = self._tkeys[iri] = row[0]
        return key

    def _intern_akey(self, conn: sqlite3.Connection, attr: str, path: str, fresh: dict[Any, int]) -> int:
        key = self._akeys.get((attr, path)) or fresh.get((attr, path))
        if key is None:
            conn.execute("INSERT OR IGNORE INTO attr_keys (attr, path) VALUES (?, ?)", (attr, path))
            key = conn.execute("SELECT akey FROM attr_keys WHERE attr = ? AND path = ?", (attr, path)).fetchone()[0]
            fresh[(attr, path)] = key
        return key

    def _intern_tkey(self, conn: sqlite3.Connection, iri: str, fresh: dict[Any, int]) -> int:
        key = self._tkeys.get(iri) or fresh.get(iri)
        if key is None:
            conn.execute("INSERT OR IGNORE INTO terms (iri) VALUES (?)", (iri,))
            key = conn.execute("SELECT tkey FROM terms WHERE iri = ?", (iri,)).fetchone()[0]
            fresh[iri] = key
        return key

    # -- writes ------------------------------------------------------------------------------------------
    async def write(self, tenant: str, ids: Sequence[str], plan: WritePlan,
                    extra_events: Sequence[tuple[str, str, dict[str, Any]]] = ()) -> list[Change]:
        """Read the current documents of `ids`, let `plan` decide, then commit it all atomically.

        Writes that arrive while the writer is busy are committed together (group commit): each runs inside its
        own savepoint, so one failing plan rolls back only itself.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[Change]] = loop.create_future()
        with self._pending_lock:
            self._pending.append((tenant, ids, plan, extra_events, done))
            start = not self._flush_scheduled
            self._flush_scheduled = True
        if start:
            flush = asyncio.ensure_future(self.db.run_writer(lambda _: self._flush(loop)))
            self._flushes.add(flush)
            flush.add_done_callback(self._flushes.discard)
        changes = await done
        if changes or extra_events:
            self.db.notify()
        return changes

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._pending_lock:
            batch, self._pending = self._pending, []
            self._flush_scheduled = False
        conn = self._writer
        assert conn is not None
        outcomes: list[tuple[Any, list[Change] | None, BaseException | None, dict[Any, int], dict[Any, int]]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for tenant, ids, plan, extra_events, done in batch:
                fresh_a: dict[Any, int] = {}
                fresh_t: dict[Any, int] = {}
                conn.execute("SAVEPOINT one_write")
                try:
                    changes = self._apply(conn, tenant, ids, plan, extra_events, fresh_a, fresh_t)
                    conn.execute("RELEASE one_write")
                    outcomes.append((done, changes, None, fresh_a, fresh_t))
                except BaseException as exc:  # the plan refused, or the write failed: undo this one only
                    conn.execute("ROLLBACK TO one_write")
                    conn.execute("RELEASE one_write")
                    outcomes.append((done, None, exc, {}, {}))
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for *_, done in batch:
                loop.call_soon_threadsafe(_settle, done, None, exc)
            return
        for done, applied, error, fresh_a, fresh_t in outcomes:
            self._akeys.update(fresh_a)
            self._tkeys.update(fresh_t)
            loop.call_soon_threadsafe(_settle, done, applied, error)

    def _apply(self, conn: sqlite3.Connection, tenant: str, ids: Sequence[str], plan: WritePlan,
               extra_events: Sequence[tuple[str, str, dict[str, Any]]], fresh_a: dict[Any, int],
               fresh_t: dict[Any, int]) -> list[Change]:
        current: dict[str, dict[str, Any] | None] = dict.fromkeys(ids)
        eids: dict[str, int] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), 500):
            chunk = unique[start:start + 500]
            rows = conn.execute(
                f"SELECT eid, id, doc FROM entities WHERE tenant = ? AND id IN ({','.join('?' * len(chunk))})",
                (tenant, *chunk))
            for eid, entity_id, doc in rows:
                current[entity_id] = orjson.loads(doc)
                eids[entity_id] = eid
        changes = plan(current)
        at = now_iso()
        outcome = WriteOutcome.of(changes, current, set(eids))
        final, partial, regeo = outcome.final, outcome.partial, outcome.regeo
        whole = [(eids[i],) for i in outcome.whole]
        if whole:
            conn.executemany("DELETE FROM attr_index WHERE eid = ?", whole)
            conn.executemany("DELETE FROM entity_types WHERE eid = ?", whole)
        conn.executemany("DELETE FROM attr_index WHERE eid = ? AND akey IN (SELECT akey FROM attr_keys WHERE attr = ?)",
                         [(eids[i], name) for i, names in partial.items() for name in names])
        geo_stale = whole + [(eids[i],) for i in regeo]
        if geo_stale:
            conn.executemany("DELETE FROM geo_rtree WHERE gid IN (SELECT gid FROM geo WHERE eid = ?)", geo_stale)
            conn.executemany("DELETE FROM geo WHERE eid = ?", geo_stale)
        gone = [(eids.pop(c.entity_id),) for c in changes if c.after is None and c.entity_id in eids]
        if gone:
            conn.executemany("DELETE FROM entities WHERE eid = ?", gone)
            for c in changes:
                if c.after is None:
                    for statement in self.on_delete:
                        row = conn.execute(statement, (tenant, c.entity_id)).fetchone()
                        if row is not None:
                            c.owner = row[0]
        # BEGIN IMMEDIATE holds the write lock, so numbering new rows from max() is safe across processes.
        next_eid = conn.execute("SELECT coalesce(max(eid), 0) FROM entities").fetchone()[0] + 1
        next_gid = conn.execute("SELECT coalesce(max(gid), 0) FROM geo").fetchone()[0] + 1
        inserts: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        types: list[tuple[int, int]] = []
        attrs: list[tuple[Any, ...]] = []
        geo: list[tuple[Any, ...]] = []
        boxes: list[tuple[Any, ...]] = []
        for entity_id, doc in final.items():
            blob = orjson.dumps(doc)
            scopes = "|" + "|".join(doc["scope"]) if doc.get("scope") else None
            eid = eids.get(entity_id)
            if eid is None:
                eid = eids[entity_id] = next_eid
                next_eid += 1
                inserts.append((eid, tenant, entity_id, blob, scopes, doc["createdAt"], doc["modifiedAt"]))
            else:
                updates.append((blob, scopes, doc["modifiedAt"], eid))
            names = partial.get(entity_id)
            if names is None:
                types.extend((eid, self._intern_tkey(conn, t, fresh_t)) for t in doc["type"])
            attrs.extend((eid, self._intern_akey(conn, attr, path, fresh_a), atype, kind, num, txt)
                         for attr, path, atype, kind, num, txt in index_rows(doc, names))
            for attr, geometry in geometries(doc) if names is None or entity_id in regeo else ():
                point = geometry["coordinates"] if geometry.get("type") == "Point" else (None, None)
                geo.append((next_gid, eid, self._intern_akey(conn, attr, "", fresh_a),
                            orjson.dumps(geometry).decode(), point[0], point[1]))
                minx, miny, maxx, maxy = bbox_of_geometry(geometry)
                boxes.append((next_gid, minx, maxx, miny, maxy))
                next_gid += 1
        conn.executemany("INSERT INTO entities (eid, tenant, id, doc, scopes, created_at, modified_at) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?)", inserts)
        conn.executemany("UPDATE entities SET doc = ?, scopes = ?, modified_at = ? WHERE eid = ?", updates)
        conn.executemany("INSERT OR IGNORE INTO entity_types (eid, tkey) VALUES (?, ?)", types)
        conn.executemany("INSERT INTO attr_index (eid, akey, atype, kind, num, txt) VALUES (?, ?, ?, ?, ?, ?)",
                         attrs)
        conn.executemany("INSERT INTO geo (gid, eid, akey, geojson, px, py) VALUES (?, ?, ?, ?, ?, ?)", geo)
        conn.executemany("INSERT INTO geo_rtree (gid, minx, maxx, miny, maxy) VALUES (?, ?, ?, ?, ?)", boxes)
        write_outbox(conn, [change_event(c, tenant) for c in changes] +
                     [(kind, subject, data, tenant) for kind, subject, data in extra_events])
        if tenant != DEFAULT_TENANT and changes:
            conn.execute("INSERT OR IGNORE INTO tenants (name, created_at) VALUES (?, ?)", (tenant, at))
        return changes

    # -- reads -------------------------------------------------------------------------------------------
    async def tenant_exists(self, tenant: str) -> bool:
        if tenant == DEFAULT_TENANT:
            return True
        return await self._in_reader(
            lambda c: c.execute("SELECT 1 FROM tenants WHERE name = ?", (tenant,)).fetchone() is not None)

    async def tenants(self) -> list[str]:
        return await self._in_reader(lambda c: [r[0] for r in c.execute("SELECT name FROM tenants ORDER BY name")])

    async def get(self, tenant: str, entity_id: str) -> dict[str, Any] | None:
        def run(c: sqlite3.Connection) -> dict[str, Any] | None:
            row = c.execute("SELECT doc FROM entities WHERE tenant = ? AND id = ?", (tenant, entity_id)).fetchone()
            return orjson.loads(row[0]) if row else None
        return await self._in_reader(run)

    async def query(self, tenant: str, query: EntityQuery) -> tuple[list[dict[str, Any]], int | None]:
        def run(c: sqlite3.Connection) -> tuple[list[dict[str, Any]], int | None]:
            where, params = self._compiler.compile(tenant, query)
            try:
                total = None
                if query.count:
                    total = c.execute(f"SELECT count(*) FROM entities e WHERE {where}", params).fetchone()[0]
                docs: list[dict[str, Any]] = []
                if query.limit > 0:
                    rows = c.execute(f"SELECT e.doc FROM entities e WHERE {where} ORDER BY e.eid LIMIT ? OFFSET ?",
                                     (*params, query.limit, query.offset))
                    docs = [orjson.loads(r[0]) for r in rows]
                return docs, total
            except sqlite3.OperationalError as exc:
                raise Problem("BadRequestData", f"the query could not be evaluated: {exc}") from exc
            finally:
                for qid in [p for p in params if isinstance(p, str) and p in self._geo_queries]:
                    self._geo_queries.pop(qid, None)
        return await self._in_reader(run)

    async def query_ids(self, tenant: str, query: EntityQuery) -> list[str]:
        def run(c: sqlite3.Connection) -> list[str]:
            where, params = self._compiler.compile(tenant, query)
            return [r[0] for r in c.execute(f"SELECT e.id FROM entities e WHERE {where} ORDER BY e.eid", params)]
        return await self._in_reader(run)

    async def type_summary(self, tenant: str) -> list[tuple[str, int]]:
        sql = ("SELECT t.iri, count(*) FROM entity_types et JOIN terms t ON t.tkey = et.tkey "
               "JOIN entities e ON e.eid = et.eid WHERE e.tenant = ? GROUP BY t.iri ORDER BY t.iri")
        return await self._in_reader(lambda c: [(r[0], r[1]) for r in c.execute(sql, (tenant,))])

    async def attribute_summary(self, tenant: str, type_iri: str | None = None) -> list[tuple[str, str, str, int]]:
        """(attribute IRI, attribute type, entity type IRI, entity count) for top-level attributes."""
        sql = ("SELECT k.attr, a.atype, t.iri, count(DISTINCT a.eid) FROM attr_index a "
               "JOIN attr_keys k ON k.akey = a.akey AND k.path = '' "
               "JOIN entities e ON e.eid = a.eid JOIN entity_types et ON et.eid = a.eid "
               "JOIN terms t ON t.tkey = et.tkey WHERE e.tenant = ? AND a.atype IS NOT NULL")
        params: list[Any] = [tenant]
        if type_iri is not None:
            sql += " AND t.iri = ?"
            params.append(type_iri)
        sql += " GROUP BY k.attr, a.atype, t.iri ORDER BY k.attr"
        return await self._in_reader(lambda c: [tuple(r) for r in c.execute(sql, params)])

    # -- documents ---------------------------------------------------------------------------------------
    async def put_document(self, tenant: str, kind: str, doc_id: str, body: dict[str, Any], *,
                           create: bool) -> bool:
        """Store a document; with create=True only if absent. Returns False when that was refused."""
        def run() -> bool:
            assert self._writer is not None
            if create:
                cur = self._writer.execute(
                    "INSERT OR IGNORE INTO documents (tenant, kind, id, body, created_at) VALUES (?, ?, ?, ?, ?)",
                    (tenant, kind, doc_id, orjson.dumps(body), now_iso()))
            else:
                cur = self._writer.execute("UPDATE documents SET body = ? WHERE tenant = ? AND kind = ? AND id = ?",
                                           (orjson.dumps(body), tenant, kind, doc_id))
            return cur.rowcount == 1
        return await self._in_writer(run)

    async def get_document(self, tenant: str, kind: str, doc_id: str) -> dict[str, Any] | None:
        def run(c: sqlite3.Connection) -> dict[str, Any] | None:
            row = c.execute("SELECT body FROM documents WHERE tenant = ? AND kind = ? AND id = ?",
                            (tenant, kind, doc_id)).fetchone()
            return orjson.loads(row[0]) if row else None
        return await self._in_reader(run)

    async def list_documents(self, tenant: str, kind: str) -> list[dict[str, Any]]:
        def run(c: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = c.execute("SELECT body FROM documents WHERE tenant = ? AND kind = ? ORDER BY created_at, id",
                             (tenant, kind))
            return [orjson.loads(r[0]) for r in rows]
        return await self._in_reader(run)

    async def delete_document(self, tenant: str, kind: str, doc_id: str) -> bool:
        def run() -> bool:
            assert self._writer is not None
            return self._writer.execute("DELETE FROM documents WHERE tenant = ? AND kind = ? AND id = ?",
                                        (tenant, kind, doc_id)).rowcount == 1
        return await self._in_writer(run)

    # -- relay ownership -----------------------------------------------------------------------------------
    async def acquire_relay_lock(self) -> bool:
        """One process per database file relays the outbox: an exclusive lock on a file beside the database,
        held until this process closes the store (or dies)."""
        if self.path == ":memory:":
            return True
        if getattr(self, "_relay_lock", None) is not None:
            return True
        import fcntl

        handle = open(f"{self.path}.relay-lock", "a+")  # noqa: SIM115 - held open for the process's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._relay_lock = handle
        return True

    # -- plain statements for the store's own modules (store/history.py) ---------------------------------
    async def run_statements(self, statements: list[tuple[str, list[tuple[Any, ...]]]]) -> int:
        """Run (sql, rows) pairs in one transaction; returns the number of rows changed."""
        def run() -> int:
            assert self._writer is not None
            before = self._writer.total_changes
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                for sql, rows in statements:
                    self._writer.executemany(sql, rows)
                self._writer.execute("COMMIT")
            except BaseException:
                self._writer.execute("ROLLBACK")
                raise
            return self._writer.total_changes - before
        return await self._in_writer(run)

    async def fetch_rows(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
        return await self._in_reader(lambda c: [tuple(r) for r in c.execute(sql, params)])

    # -- notification queue ------------------------------------------------------------------------------
    async def enqueue_notifications(self, rows: list[tuple[str, str, str, bytes, float]]) -> int:
        """(tenant, subscription id, dedupe key, payload, due time); a dedupe key seen before is ignored."""
        def run() -> int:
            assert self._writer is not None
            before = self._writer.total_changes
            with _transaction(self._writer):  # one commit for the lot, not one per row
                self._writer.executemany("INSERT OR IGNORE INTO notification_queue (tenant, subscription, dedupe, "
                                         "payload, due_at) VALUES (?, ?, ?, ?, ?)", rows)
            return self._writer.total_changes - before
        return await self._in_writer(run)

    async def due_notifications(self, now: float, limit: int) -> list[tuple[int, str, str, bytes, int]]:
        def run(c: sqlite3.Connection) -> list[tuple[int, str, str, bytes, int]]:
            return [tuple(r) for r in c.execute(
                "SELECT nid, tenant, subscription, payload, attempts FROM notification_queue WHERE due_at <= ? "
                "ORDER BY due_at, nid LIMIT ?", (now, limit))]
        return await self._in_reader(run)

    async def settle_notifications(self, delivered: list[int], retry: list[tuple[int, float, str]],
                                   dropped: list[int], documents: Sequence[DocumentUpdate] = ()) -> None:
        """Delete delivered (and dropped: subscription gone) notifications; push failed ones back; apply each
        (tenant, kind, id, change) to that document if it still exists. All in one transaction."""
        def run() -> None:
            assert self._writer is not None
            with _transaction(self._writer):
                self._writer.executemany("DELETE FROM notification_queue WHERE nid = ?",
                                         [(n,) for n in delivered + dropped])
                self._writer.executemany("UPDATE notification_queue SET attempts = attempts + 1, due_at = ?, "
                                         "last_error = ? WHERE nid = ?", [(due, err, n) for n, due, err in retry])
                for tenant, kind, doc_id, change in documents:
                    row = self._writer.execute("SELECT body FROM documents WHERE tenant = ? AND kind = ? AND id = ?",
                                               (tenant, kind, doc_id)).fetchone()
                    if row is not None:
                        self._writer.execute("UPDATE documents SET body = ? WHERE tenant = ? AND kind = ? AND id = ?",
                                             (orjson.dumps(change(orjson.loads(row[0]))), tenant, kind, doc_id))
        await self._in_writer(run)

    # -- outbox ------------------------------------------------------------------------------------------
    async def read_outbox(self, after_seq: int, limit: int) -> list[ChangeEvent]:
        def run(c: sqlite3.Connection) -> list[ChangeEvent]:
            rows = c.execute("SELECT seq, tenant, kind, subject, at, data FROM outbox WHERE seq > ? "
                             "ORDER BY seq LIMIT ?", (after_seq, limit))
            return [ChangeEvent(r[0], r[1], r[2], r[3], r[4], orjson.loads(r[5])) for r in rows]
        return await self._in_reader(run)

    async def last_outbox_seq(self) -> int:
        return await self._in_reader(lambda c: c.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0])

    async def get_cursor(self, name: str) -> int | None:
        def run(c: sqlite3.Connection) -> int | None:
            row = c.execute("SELECT seq FROM cursors WHERE name = ?", (name,)).fetchone()
            return row[0] if row else None
        return await self._in_reader(run)

    async def set_cursor(self, name: str, seq: int) -> None:
        def run() -> None:
            assert self._writer is not None
            self._writer.execute("INSERT INTO cursors (name, seq) VALUES (?, ?) "
                                 "ON CONFLICT (name) DO UPDATE SET seq = excluded.seq", (name, seq))
        await self._in_writer(run)

    # -- benchmarks' baseline ----------------------------------------------------------------------------
    async def raw_insert(self, tenant: str, rows: list[tuple[str, bytes]]) -> None:
        """Insert (id, document) rows straight into the entities table: the floor a write path is measured
        against."""
        def run() -> None:
            assert self._writer is not None
            now = now_iso()
            self._writer.execute("BEGIN IMMEDIATE")
            self._writer.executemany(
                "INSERT INTO entities (tenant, id, doc, created_at, modified_at) VALUES (?, ?, ?, ?, ?)",
                [(tenant, i, d, now, now) for i, d in rows])
            self._writer.execute("COMMIT")
        await self._in_writer(run)


def _settle(done: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if done.done():
        return
    if exc is not None:
        done.set_exception(exc)
    else:
        done.set_result(result)


def bbox_of_geometry(geometry: dict[str, Any]) -> tuple[float, float, float, float]:
    from civicmesh.ngsild.geometry import bbox
    return bbox(geometry)
