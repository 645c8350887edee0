"""The production engine: PostgreSQL with PostGIS; geo-queries run in SQL."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import orjson
import psycopg
import shapely

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
from civicmesh.store.db import Database, PostgresDatabase, Target
from civicmesh.store.sql import QueryCompiler

log = logging.getLogger("civicmesh.store")

MIGRATIONS: list[list[str]] = [
    [  # 1: as the SQLite engine, with PostGIS geometries
        "CREATE EXTENSION IF NOT EXISTS postgis",
        "CREATE TABLE tenants (name TEXT PRIMARY KEY, created_at TEXT NOT NULL)",
        "CREATE TABLE entities (eid BIGSERIAL PRIMARY KEY, tenant TEXT NOT NULL, id TEXT NOT NULL, "
        "doc BYTEA NOT NULL, scopes TEXT, created_at TEXT NOT NULL, modified_at TEXT NOT NULL, "
        "UNIQUE (tenant, id))",
        "CREATE INDEX entities_tenant_eid ON entities (tenant, eid)",
        "CREATE TABLE terms (tkey SERIAL PRIMARY KEY, iri TEXT NOT NULL UNIQUE)",
        "CREATE TABLE entity_types (eid BIGINT NOT NULL, tkey INTEGER NOT NULL, PRIMARY KEY (tkey, eid))",
        "CREATE INDEX entity_types_eid ON entity_types (eid)",
        "CREATE TABLE attr_keys (akey SERIAL PRIMARY KEY, attr TEXT NOT NULL, path TEXT NOT NULL, "
        "UNIQUE (attr, path))",
        "CREATE TABLE attr_index (eid BIGINT NOT NULL, akey INTEGER NOT NULL, atype TEXT, kind CHAR(1) NOT NULL, "
        "num DOUBLE PRECISION, txt TEXT)",
        "CREATE INDEX attr_index_num ON attr_index (akey, num, eid)",
        "CREATE INDEX attr_index_txt ON attr_index (akey, txt, eid)",
        "CREATE INDEX attr_index_eid ON attr_index (eid, akey)",
        "CREATE TABLE geo (gid BIGSERIAL PRIMARY KEY, eid BIGINT NOT NULL, akey INTEGER NOT NULL, "
        "geom geometry(Geometry, 4326) NOT NULL)",
        "CREATE INDEX geo_eid ON geo (eid)",
        "CREATE INDEX geo_geom ON geo USING gist (geom)",
        "CREATE INDEX geo_geog ON geo USING gist ((geom::geography))",
        "CREATE TABLE outbox (seq BIGSERIAL PRIMARY KEY, tenant TEXT NOT NULL, kind TEXT NOT NULL, "
        "subject TEXT NOT NULL, at TEXT NOT NULL, data BYTEA NOT NULL)",
        "CREATE TABLE cursors (name TEXT PRIMARY KEY, seq BIGINT NOT NULL)",
    ],
    [  # 2: small JSON documents the broker keeps besides entities (context-source registrations, contexts)
        "CREATE TABLE documents (tenant TEXT NOT NULL, kind TEXT NOT NULL, id TEXT NOT NULL, body BYTEA NOT NULL, "
        "created_at TEXT NOT NULL, PRIMARY KEY (tenant, kind, id))",
    ],
    [  # 3: notifications due to subscribers, kept until delivered (retried with backoff, never dropped)
        "CREATE TABLE notification_queue (nid BIGSERIAL PRIMARY KEY, tenant TEXT NOT NULL, subscription TEXT NOT NULL, "
        "dedupe TEXT NOT NULL UNIQUE, payload BYTEA NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, "
        "due_at DOUBLE PRECISION NOT NULL, last_error TEXT)",
        "CREATE INDEX notification_queue_due ON notification_queue (due_at)",
    ],
    [  # 4: attribute history for the temporal API, fed by the change events
        "CREATE TABLE history (hid BIGSERIAL PRIMARY KEY, tenant TEXT NOT NULL, entity_id TEXT NOT NULL, "
        "attr TEXT NOT NULL, instance_id TEXT NOT NULL, dataset_id TEXT, observed_at TEXT, created_at TEXT NOT NULL, "
        "modified_at TEXT NOT NULL, deleted_at TEXT, num DOUBLE PRECISION, value BYTEA)",
        "CREATE INDEX history_observed ON history (tenant, entity_id, attr, observed_at)",
        "CREATE INDEX history_modified ON history (tenant, entity_id, attr, modified_at)",
        "CREATE UNIQUE INDEX history_instance ON history (tenant, entity_id, instance_id)",
        "CREATE TABLE history_entities (tenant TEXT NOT NULL, entity_id TEXT NOT NULL, types TEXT NOT NULL, "
        "created_at TEXT NOT NULL, deleted_at TEXT, PRIMARY KEY (tenant, entity_id))",
    ],
    [  # 5: observedAt as epoch seconds, so aggregation periods are arithmetic, answered from one covering index
        "ALTER TABLE history ADD COLUMN observed_s DOUBLE PRECISION",
        "UPDATE history SET observed_s = extract(epoch from observed_at::timestamptz) WHERE observed_at IS NOT NULL",
        "CREATE INDEX history_observed_num ON history (tenant, entity_id, attr, observed_s, num)",
    ],
]

async def migrate(db: Database) -> int:
    """The entity store's tables (room `store`; before the migration table, `schema_version`)."""
    return await db.migrate("store", MIGRATIONS, legacy="schema_version")


_RELAY_LOCK = 7_311_002  # held by the one process that relays the outbox

# `&&` lets the GiST index find candidates; ST_MakeValid keeps GEOS from failing on self-intersecting areas.
_GEO_SQL = {
    "within": "g.geom && {q} AND ST_Within(ST_MakeValid(g.geom), {q})",
    "contains": "g.geom && {q} AND ST_Contains(ST_MakeValid(g.geom), {q})",
    "intersects": "g.geom && {q} AND ST_Intersects(ST_MakeValid(g.geom), {q})",
    "equals": "g.geom && {q} AND ST_Equals(ST_MakeValid(g.geom), {q})",
    "disjoint": "ST_Disjoint(ST_MakeValid(g.geom), {q})",
    "overlaps": "g.geom && {q} AND ST_Overlaps(ST_MakeValid(g.geom), {q})",
}


def _pg(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresDialect:
    attr_index = "attr_index a"
    # OFFSET 0 stops the planner from turning a probe into a join over every matching value (its per-column
    # statistics cannot see how selective a value is for one attribute); as a per-row probe in eid order the
    # LIMIT ends the scan early.
    probe_end = " OFFSET 0"

    def type_filter(self, n: int) -> str:
        # A per-row probe too: hashing every entity of a type for each query costs more than the LIMIT saves.
        return f"EXISTS (SELECT 1 FROM entity_types t WHERE t.eid = e.eid AND t.tkey IN ({','.join('?' * n)}) OFFSET 0)"

    def regex(self, column: str) -> str:
        return f"{column} ~ ?"

    def geo_condition(self, query: Any, akey: int, params: list[Any]) -> str:
        q = "ST_SetSRID(ST_GeomFromGeoJSON(?), 4326)"
        geojson = shapely.to_geojson(query.geometry)
        if query.relation == "near":
            # On the sphere (use_spheroid=false): several times cheaper than the spheroid, and the same mean earth
            # radius the SQLite engine and the Python predicates use, so both engines agree at the boundary.
            parts = []
            params.append(akey)
            if query.max_distance is not None:
                parts.append(f"ST_DWithin(g.geom::geography, {q}::geography, ?, false)")
                params.extend([geojson, query.max_distance])
            if query.min_distance is not None:
                parts.append(f"NOT ST_DWithin(g.geom::geography, {q}::geography, ?, false)")
                params.extend([geojson, query.min_distance])
            return f"e.eid IN (SELECT g.eid FROM geo g WHERE g.akey = ? AND {' AND '.join(parts) or 'TRUE'})"
        sql = _GEO_SQL[query.relation].format(q=q)
        params.append(akey)
        params.extend([geojson] * sql.count("?"))
        return f"e.eid IN (SELECT g.eid FROM geo g WHERE g.akey = ? AND {sql})"



class PostgresStore:
    engine = "postgres"

    def __init__(self, db: PostgresDatabase | str) -> None:
        # A URL (tests, benches) makes a Database of the store's own; the platform passes its shared one.
        self.owns_db = isinstance(db, str)
        self.db = PostgresDatabase(Target.parse(db)) if isinstance(db, str) else db
        self.url = self.db.url
        self._pool = self.db.pool
        self._akeys: dict[tuple[str, str], int] = {}
        self._tkeys: dict[str, int] = {}
        self._created_since_analyze = 0
        self._analyzed_size = 0
        self._analyze_task: asyncio.Task[None] | None = None
        self._history_since_analyze = 0
        self._history_analyzed_size = 0
        self._history_analyze_task: asyncio.Task[None] | None = None
        self._relay_conn: psycopg.AsyncConnection | None = None
        # SQL run for each deleted entity in the deleting transaction; a row it returns is recorded as the
        # entity's owner in the deletion event (the exchange releases ownership this way).
        self.on_delete: list[str] = []
        self._compiler = QueryCompiler(PostgresDialect(), self._akeys_get, self._tkeys_get)
        # Settings.regex_seconds: the statement timeout of a query that matches regular expressions.
        self.regex_seconds = 5.0

    def add_listener(self, callback: Callable[[], None]) -> None:
        self.db.add_listener(callback)

    async def open(self) -> None:
        await self.db.open()
        await migrate(self.db)
        async with self._pool.connection() as conn:
            await self._reload_keys(conn)

    async def _reload_keys(self, conn: psycopg.AsyncConnection) -> None:
        for tkey, iri in await (await conn.execute("SELECT tkey, iri FROM terms")).fetchall():
            self._tkeys[iri] = tkey
        for akey, attr, path in await (await conn.execute("SELECT akey, attr, path FROM attr_keys")).fetchall():
            self._akeys[(attr, path)] = akey

    async def close(self) -> None:
        if self._relay_conn is not None:
            await self._relay_conn.close()
            self._relay_conn = None
        if self._analyze_task is not None:
            await self._analyze_task
        if self._history_analyze_task is not None:
            await self._history_analyze_task
        if self.owns_db:
            await self.db.close()

    # The compiler looks keys up synchronously; keys written by other workers are fetched before each query.
    def _akeys_get(self, attr: str, path: str) -> int | None:
        return self._akeys.get((attr, path))

    def _tkeys_get(self, iri: str) -> int | None:
        return self._tkeys.get(iri)

    async def _prefetch_keys(self, conn: psycopg.AsyncConnection, query: EntityQuery) -> None:
        wanted_types = {t for c in query.types or [] for t in c} - set(self._tkeys)
        if wanted_types:
            rows = await (await conn.execute("SELECT tkey, iri FROM terms WHERE iri = ANY(%s)",
                                             (list(wanted_types),))).fetchall()
            self._tkeys.update({iri: tkey for tkey, iri in rows})
        # Attribute keys: cheap to refresh all when any is unknown (their number is the schema's size).
        if query.q is not None or query.attrs_any or query.geo is not None:
            await self._refresh_akeys(conn)

    async def _refresh_akeys(self, conn: psycopg.AsyncConnection) -> None:
        rows = await (await conn.execute("SELECT akey, attr, path FROM attr_keys WHERE akey > %s",
                                         (max(self._akeys.values(), default=0),))).fetchall()
        self._akeys.update({(attr, path): akey for akey, attr, path in rows})

    async def _intern(self, conn: psycopg.AsyncConnection, rows: list[tuple[str, str]], types: set[str]) -> None:
        missing_a = sorted({r for r in rows if r not in self._akeys})
        if missing_a:
            await conn.cursor().executemany(
                "INSERT INTO attr_keys (attr, path) VALUES (%s, %s) ON CONFLICT DO NOTHING", missing_a)
            await self._refresh_akeys(conn)
            still = [r for r in missing_a if r not in self._akeys]
            for attr, path in still:
                row = await (await conn.execute("SELECT akey FROM attr_keys WHERE attr = %s AND path = %s",
                                                (attr, path))).fetchone()
                if row:
                    self._akeys[(attr, path)] = row[0]
        missing_t = sorted(t for t in types if t not in self._tkeys)
        if missing_t:
            await conn.cursor().executemany("INSERT INTO terms (iri) VALUES (%s) ON CONFLICT DO NOTHING",
                                            [(t,) for t in missing_t])
            rows_t = await (await conn.execute("SELECT tkey, iri FROM terms WHERE iri = ANY(%s)",
                                               (missing_t,))).fetchall()
            self._tkeys.update({iri: tkey for tkey, iri in rows_t})

    # -- writes ------------------------------------------------------------------------------------------
    async def write(self, tenant: str, ids: Sequence[str], plan: WritePlan,
                    extra_events: Sequence[tuple[str, str, dict[str, Any]]] = ()) -> list[Change]:
        try:
            changes = await self._write(tenant, ids, plan, extra_events)
        except psycopg.errors.UniqueViolation as exc:
            raise Problem("AlreadyExists", "an entity with this id was created concurrently") from exc
        self._created_since_analyze += sum(1 for c in changes if c.before is None)
        if self._created_since_analyze > max(5_000, self._analyzed_size // 5) and self._analyze_task is None:
            self._analyze_task = asyncio.create_task(self._analyze())
        return changes

    async def _analyze(self) -> None:
        """Refresh planner statistics after bulk loads; autovacuum would, but only up to a minute later and the
        planner meanwhile picks full scans for fresh tables."""
        try:
            self._created_since_analyze = 0
            size = await self._analyze_tables("entities, entity_types, attr_index, geo", "entities")
            self._analyzed_size = self._analyzed_size if size is None else size
        finally:
            self._analyze_task = None

    async def _analyze_tables(self, tables: str, counted: str, *, vacuum: bool = False) -> int | None:
        """ANALYZE `tables` (with `vacuum`, VACUUM (ANALYZE)); the planner's row estimate of `counted` afterwards
        (None when it failed)."""
        try:
            async with self._pool.connection() as conn:
                await conn.execute(f"{'VACUUM (ANALYZE)' if vacuum else 'ANALYZE'} {tables}")
                row = await (await conn.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = %s",
                                                (counted,))).fetchone()
                return max(int(row[0]) if row else 0, 0)
        except Exception:  # statistics are an optimisation; a failure must not disturb writes
            log.warning("ANALYZE %s failed", tables, exc_info=True)
            return None

    async def _write(self, tenant: str, ids: Sequence[str], plan: WritePlan,
                     extra_events: Sequence[tuple[str, str, dict[str, Any]]]) -> list[Change]:
        async with self.db.transaction() as tx:
            conn = tx.conn  # type: ignore[attr-defined]
            current: dict[str, dict[str, Any] | None] = dict.fromkeys(ids)
            eids: dict[str, int] = {}
            unique = sorted(set(ids))  # lock rows in one order, so concurrent batches cannot deadlock
            if unique:
                rows = await (await conn.execute(
                    "SELECT eid, id, doc FROM entities WHERE tenant = %s AND id = ANY(%s) ORDER BY id FOR UPDATE",
                    (tenant, unique))).fetchall()
                for eid, entity_id, doc in rows:
                    current[entity_id] = orjson.loads(doc)
                    eids[entity_id] = eid
            changes = plan(current)
            at = now_iso()
            cur = conn.cursor()
            outcome = WriteOutcome.of(changes, current, set(eids))
            final, partial, regeo = outcome.final, outcome.partial, outcome.regeo
            whole = [eids[i] for i in outcome.whole]
            if whole:
                await conn.execute("DELETE FROM attr_index WHERE eid = ANY(%s)", (whole,))
                await conn.execute("DELETE FROM entity_types WHERE eid = ANY(%s)", (whole,))
            pairs = [(eids[i], name) for i, names in partial.items() for name in names]
            if pairs:
                await conn.execute(
                    "DELETE FROM attr_index a USING unnest(%s::bigint[], %s::text[]) AS p(eid, attr), attr_keys k "
                    "WHERE a.eid = p.eid AND k.attr = p.attr AND a.akey = k.akey",
                    ([e for e, _ in pairs], [n for _, n in pairs]))
            geo_stale = whole + [eids[i] for i in regeo]
            if geo_stale:
                await conn.execute("DELETE FROM geo WHERE eid = ANY(%s)", (geo_stale,))
            gone = [eids.pop(c.entity_id) for c in changes if c.after is None and c.entity_id in eids]
            if gone:
                await conn.execute("DELETE FROM entities WHERE eid = ANY(%s)", (gone,))
                for c in changes:
                    if c.after is None:
                        for statement in self.on_delete:
                            row = await (await conn.execute(_pg(statement), (tenant, c.entity_id))).fetchone()
                            if row is not None:
                                c.owner = row[0]
            new_ids = [i for i in final if i not in eids]
            if new_ids:
                seq_rows = await (await conn.execute(
                    "SELECT nextval(pg_get_serial_sequence('entities', 'eid')) FROM generate_series(1, %s)",
                    (len(new_ids),))).fetchall()
                for entity_id, (eid,) in zip(new_ids, seq_rows, strict=True):
                    eids[entity_id] = eid
            inserts: list[tuple[Any, ...]] = []
            updates: list[tuple[Any, ...]] = []
            type_rows: list[tuple[int, int]] = []
            geo_rows: list[tuple[Any, ...]] = []
            all_index: list[tuple[int, tuple[Any, ...]]] = []
            all_types: set[str] = set()
            for entity_id, doc in final.items():
                eid = eids[entity_id]
                blob = orjson.dumps(doc)
                scopes = "|" + "|".join(doc["scope"]) if doc.get("scope") else None
                if entity_id in new_ids:
                    inserts.append((eid, tenant, entity_id, blob, scopes, doc["createdAt"], doc["modifiedAt"]))
                else:
                    updates.append((blob, scopes, doc["modifiedAt"], eid))
                names = partial.get(entity_id)
                if names is None:
                    all_types.update(doc["type"])
                all_index.extend((eid, r) for r in index_rows(doc, names))
                if names is None or entity_id in regeo:
                    geo_rows.extend((eid, attr, orjson.dumps(g).decode()) for attr, g in geometries(doc))
            await self._intern(conn, [(r[0], r[1]) for _, r in all_index] + [(a, "") for _, a, _ in geo_rows],
                               all_types)
            for entity_id, doc in final.items():
                if entity_id not in partial:
                    type_rows.extend((eids[entity_id], self._tkeys[t]) for t in doc["type"])
            attr_rows = [(eid, self._akeys[(r[0], r[1])], r[2], r[3], r[4], r[5]) for eid, r in all_index]
            if inserts:
                await cur.executemany("INSERT INTO entities (eid, tenant, id, doc, scopes, created_at, modified_at) "
                                      "VALUES (%s, %s, %s, %s, %s, %s, %s)", inserts)
            if updates:
                await cur.executemany("UPDATE entities SET doc = %s, scopes = %s, modified_at = %s WHERE eid = %s",
                                      updates)
            if type_rows:
                await cur.executemany("INSERT INTO entity_types (eid, tkey) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                                      type_rows)
            if attr_rows:
                async with cur.copy("COPY attr_index (eid, akey, atype, kind, num, txt) FROM STDIN") as copy:
                    for row in attr_rows:
                        await copy.write_row(row)
            if geo_rows:
                await cur.executemany(
                    "INSERT INTO geo (eid, akey, geom) VALUES (%s, %s, ST_SetSRID(ST_GeomFromGeoJSON(%s), 4326))",
                    [(eid, self._akeys[(attr, "")], g) for eid, attr, g in geo_rows])
            if tenant != DEFAULT_TENANT and changes:
                await conn.execute("INSERT INTO tenants (name, created_at) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                                   (tenant, at))
            tx.emit_many(changes, tenant)
            for kind, subject, data in extra_events:
                tx.emit(kind, subject, data, tenant)
        return changes

    # -- reads -------------------------------------------------------------------------------------------
    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with self._pool.connection() as conn:
            return await (await conn.execute(sql, params)).fetchall()

    async def tenant_exists(self, tenant: str) -> bool:
        if tenant == DEFAULT_TENANT:
            return True
        return bool(await self._fetch("SELECT 1 FROM tenants WHERE name = %s", (tenant,)))

    async def tenants(self) -> list[str]:
        return [r[0] for r in await self._fetch("SELECT name FROM tenants ORDER BY name")]

    async def get(self, tenant: str, entity_id: str) -> dict[str, Any] | None:
        rows = await self._fetch("SELECT doc FROM entities WHERE tenant = %s AND id = %s", (tenant, entity_id))
        return orjson.loads(rows[0][0]) if rows else None

    @asynccontextmanager
    async def _regex_bound(self, conn: psycopg.AsyncConnection, where: str) -> AsyncIterator[None]:
        """A query that matches regular expressions runs with a statement timeout: RE2 checked the pattern, but
        PostgreSQL's own engine (`~`) backtracks on some patterns (issue 13, finding 9)."""
        if " ~ " not in where:
            yield
            return
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL statement_timeout = {max(1, int(self.regex_seconds * 1000))}")
                yield
        except psycopg.errors.QueryCanceled as exc:
            raise Problem("TooComplexQuery", f"the query's regular expression did not finish within "
                          f"{self.regex_seconds:g} s (CIVICMESH_REGEX_SECONDS)") from exc

    async def query(self, tenant: str, query: EntityQuery) -> tuple[list[dict[str, Any]], int | None]:
        async with self._pool.connection() as conn:
            await self._prefetch_keys(conn, query)
            where, params = self._compiler.compile(tenant, query)
            try:
                async with self._regex_bound(conn, where):
                    total = None
                    if query.count:
                        row = await (await conn.execute(_pg(f"SELECT count(*) FROM entities e WHERE {where}"),
                                                        params)).fetchone()
                        total = row[0] if row else 0
                    docs: list[dict[str, Any]] = []
                    if query.limit > 0:
                        rows = await (await conn.execute(
                            _pg(f"SELECT e.doc FROM entities e WHERE {where} ORDER BY e.eid LIMIT ? OFFSET ?"),
                            (*params, query.limit, query.offset))).fetchall()
                        docs = [orjson.loads(r[0]) for r in rows]
                    return docs, total
            except (psycopg.errors.InvalidRegularExpression, psycopg.errors.DataException) as exc:
                raise Problem("BadRequestData", f"the query could not be evaluated: {exc}") from exc

    async def query_ids(self, tenant: str, query: EntityQuery) -> list[str]:
        async with self._pool.connection() as conn:
            await self._prefetch_keys(conn, query)
            where, params = self._compiler.compile(tenant, query)
            async with self._regex_bound(conn, where):
                rows = await (await conn.execute(_pg(f"SELECT e.id FROM entities e WHERE {where} ORDER BY e.eid"),
                                                 params)).fetchall()
            return [r[0] for r in rows]

    async def type_summary(self, tenant: str) -> list[tuple[str, int]]:
        rows = await self._fetch(
            "SELECT t.iri, count(*) FROM entity_types et JOIN terms t ON t.tkey = et.tkey "
            "JOIN entities e ON e.eid = et.eid WHERE e.tenant = %s GROUP BY t.iri ORDER BY t.iri", (tenant,))
        return [(r[0], r[1]) for r in rows]

    async def attribute_summary(self, tenant: str, type_iri: str | None = None) -> list[tuple[str, str, str, int]]:
        sql = ("SELECT k.attr, a.atype, t.iri, count(DISTINCT a.eid) FROM attr_index a "
               "JOIN attr_keys k ON k.akey = a.akey AND k.path = '' "
               "JOIN entities e ON e.eid = a.eid JOIN entity_types et ON et.eid = a.eid "
               "JOIN terms t ON t.tkey = et.tkey WHERE e.tenant = %s AND a.atype IS NOT NULL")
        params: list[Any] = [tenant]
        if type_iri is not None:
            sql += " AND t.iri = %s"
            params.append(type_iri)
        sql += " GROUP BY k.attr, a.atype, t.iri ORDER BY k.attr"
        return [tuple(r) for r in await self._fetch(sql, params)]

    # -- documents ---------------------------------------------------------------------------------------
    async def put_document(self, tenant: str, kind: str, doc_id: str, body: dict[str, Any], *,
                           create: bool) -> bool:
        """Store a document; with create=True only if absent. Returns False when that was refused."""
        async with self._pool.connection() as conn:
            if create:
                cur = await conn.execute(
                    "INSERT INTO documents (tenant, kind, id, body, created_at) VALUES (%s, %s, %s, %s, %s) "
                    "ON CONFLICT DO NOTHING", (tenant, kind, doc_id, orjson.dumps(body), now_iso()))
            else:
                cur = await conn.execute("UPDATE documents SET body = %s WHERE tenant = %s AND kind = %s AND id = %s",
                                         (orjson.dumps(body), tenant, kind, doc_id))
            return cur.rowcount == 1

    async def get_document(self, tenant: str, kind: str, doc_id: str) -> dict[str, Any] | None:
        rows = await self._fetch("SELECT body FROM documents WHERE tenant = %s AND kind = %s AND id = %s",
                                 (tenant, kind, doc_id))
        return orjson.loads(rows[0][0]) if rows else None

    async def list_documents(self, tenant: str, kind: str) -> list[dict[str, Any]]:
        rows = await self._fetch("SELECT body FROM documents WHERE tenant = %s AND kind = %s ORDER BY created_at, id",
                                 (tenant, kind))
        return [orjson.loads(r[0]) for r in rows]

    async def delete_document(self, tenant: str, kind: str, doc_id: str) -> bool:
        async with self._pool.connection() as conn:
            cur = await conn.execute("DELETE FROM documents WHERE tenant = %s AND kind = %s AND id = %s",
                                     (tenant, kind, doc_id))
            return cur.rowcount == 1

    # -- relay ownership -----------------------------------------------------------------------------------
    async def acquire_relay_lock(self) -> bool:
        """One process per database relays the outbox: a session advisory lock on a connection of its own,
        released when that connection ends (close, crash, network loss)."""
        if self._relay_conn is not None:
            return True
        conn = await self.db.dedicated()
        row = await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (_RELAY_LOCK,))).fetchone()
        if row and row[0]:
            self._relay_conn = conn
            return True
        await conn.close()
        return False

    # -- plain statements for the store's own modules (store/history.py) ---------------------------------
    async def run_statements(self, statements: list[tuple[str, list[tuple[Any, ...]]]]) -> int:
        changed = 0
        history_rows = 0
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor()
            for sql, rows in statements:
                if rows:
                    await cur.executemany(_pg(sql), rows)
                    changed += max(cur.rowcount, 0)
                    if sql.startswith("INSERT INTO history "):
                        history_rows += len(rows)
        self._history_since_analyze += history_rows
        if self._history_since_analyze > max(5_000, self._history_analyzed_size // 5) \
                and self._history_analyze_task is None:
            self._history_analyze_task = asyncio.create_task(self._analyze_history())
        return changed

    async def _analyze_history(self) -> None:
        """Fresh planner statistics after bulk history writes: without them the planner reads an entity's whole
        history through the modifiedAt index to answer an observedAt range (45 ms instead of 1.6 ms for a day of
        minute data among 100,000 instances). VACUUM too: it marks the new pages all-visible, so the aggregations'
        index-only scans stop visiting the table for every instance (1,440 heap fetches for a day of minute data;
        0.77 -> 0.52 ms per retrieve's statement). Autovacuum would, but may come late, or never: it is off on
        these machines."""
        try:
            self._history_since_analyze = 0
            size = await self._analyze_tables("history, history_entities", "history", vacuum=True)
            self._history_analyzed_size = self._history_analyzed_size if size is None else size
        finally:
            self._history_analyze_task = None

    async def fetch_rows(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in await self._fetch(_pg(sql), params)]

    # -- notification queue ------------------------------------------------------------------------------
    async def enqueue_notifications(self, rows: list[tuple[str, str, str, bytes, float]]) -> int:
        """(tenant, subscription id, dedupe key, payload, due time); a dedupe key seen before is ignored."""
        if not rows:
            return 0
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            # executemany pipelines the inserts: one round trip for the lot instead of one per row
            await cur.executemany("INSERT INTO notification_queue (tenant, subscription, dedupe, payload, due_at) "
                                  "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING", rows)
            return max(cur.rowcount, 0)

    async def due_notifications(self, now: float, limit: int) -> list[tuple[int, str, str, bytes, int]]:
        rows = await self._fetch("SELECT nid, tenant, subscription, payload, attempts FROM notification_queue "
                                 "WHERE due_at <= %s ORDER BY due_at, nid LIMIT %s", (now, limit))
        return [tuple(r) for r in rows]

    async def settle_notifications(self, delivered: list[int], retry: list[tuple[int, float, str]],
                                   dropped: list[int], documents: Sequence[DocumentUpdate] = ()) -> None:
        """Delete delivered (and dropped) notifications, push failed ones back and apply each (tenant, kind, id,
        change) to that document if it still exists, in one transaction."""
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            if delivered or dropped:
                await cur.execute("DELETE FROM notification_queue WHERE nid = ANY(%s)", (delivered + dropped,))
            if retry:
                await cur.executemany("UPDATE notification_queue SET attempts = attempts + 1, due_at = %s, "
                                      "last_error = %s WHERE nid = %s", [(due, err, n) for n, due, err in retry])
            for tenant, kind, doc_id, change in documents:
                await cur.execute("SELECT body FROM documents WHERE tenant = %s AND kind = %s AND id = %s FOR UPDATE",
                                  (tenant, kind, doc_id))
                row = await cur.fetchone()
                if row is not None:
                    await cur.execute("UPDATE documents SET body = %s WHERE tenant = %s AND kind = %s AND id = %s",
                                      (orjson.dumps(change(orjson.loads(row[0]))), tenant, kind, doc_id))

    # -- outbox ------------------------------------------------------------------------------------------
    async def read_outbox(self, after_seq: int, limit: int) -> list[ChangeEvent]:
        rows = await self._fetch("SELECT seq, tenant, kind, subject, at, data FROM outbox WHERE seq > %s "
                                 "ORDER BY seq LIMIT %s", (after_seq, limit))
        return [ChangeEvent(r[0], r[1], r[2], r[3], r[4], orjson.loads(r[5])) for r in rows]

    async def last_outbox_seq(self) -> int:
        rows = await self._fetch("SELECT coalesce(max(seq), 0) FROM outbox")
        return int(rows[0][0])

    async def get_cursor(self, name: str) -> int | None:
        rows = await self._fetch("SELECT seq FROM cursors WHERE name = %s", (name,))
        return int(rows[0][0]) if rows else None

    async def set_cursor(self, name: str, seq: int) -> None:
        async with self._pool.connection() as conn:
            await conn.execute("INSERT INTO cursors (name, seq) VALUES (%s, %s) "
                               "ON CONFLICT (name) DO UPDATE SET seq = excluded.seq", (name, seq))

    async def raw_insert(self, tenant: str, rows: list[tuple[str, bytes]]) -> None:
        now = now_iso()
        async with self._pool.connection() as conn, conn.transaction():
            await conn.cursor().executemany(
                "INSERT INTO entities (tenant, id, doc, created_at, modified_at) VALUES (%s, %s, %s, %s, %s)",
                [(tenant, i, d, now, now) for i, d in rows])
