"""Ledger persistence: every SQL statement of the trusted ledger lives here.

A repository over the platform's one Database (store/db.py), used synchronously from worker threads through the
Database's bridge (the Merkle work is CPU-bound and runs off the event loop). Tables are prefixed `ledger_` and
versioned as room `ledger` in the migration table, so they share a database with the broker without colliding.

Sequencing and integration are separate transactions on separate rows (`ledger_seq`, `ledger_tree`), so
appends keep flowing while a batch is hashed and signed. Rows are only ever inserted; the Merkle tree and
the witnesses' cosignatures, not the database, are what make tampering visible.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from civicmesh.store.db import Database

NodeId = tuple[int, int]


@dataclass(frozen=True)
class NewEntry:
    leaf_hash: bytes
    entry: bytes
    kind: str
    actor: str
    subject: str
    at: str
    payload: str | None = None
    dedupe: str | None = None


@dataclass(frozen=True)
class EntryRow:
    index: int
    leaf_hash: bytes
    entry: bytes
    kind: str
    actor: str
    subject: str
    at: str
    payload: str | None


@dataclass(frozen=True)
class Integration:
    """What an integration step computed: the store writes all of it in one transaction."""

    size: int
    frontier: list[bytes]
    nodes: list[tuple[int, int, bytes]]
    checkpoint_note: str
    at: str


# step(old_size, old_frontier, new_leaf_hashes) -> Integration
IntegrationStep = Callable[[int, list[bytes], list[bytes]], Integration]


def _ddl(blob: str, bigint: str, without_rowid: str) -> list[str]:
    return [
        f"CREATE TABLE IF NOT EXISTS ledger_seq (id INTEGER PRIMARY KEY CHECK (id = 1),"
        f" next_index {bigint} NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS ledger_tree (id INTEGER PRIMARY KEY CHECK (id = 1),"
        f" size {bigint} NOT NULL,"
        f" frontier {blob} NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS ledger_entries (idx {bigint} PRIMARY KEY, leaf_hash {blob} NOT NULL,"
        f" entry {blob} NOT NULL, kind TEXT NOT NULL, actor TEXT NOT NULL, subject TEXT NOT NULL,"
        " at TEXT NOT NULL,"
        f" payload TEXT, dedupe TEXT UNIQUE)",
        "CREATE INDEX IF NOT EXISTS ledger_entries_leaf ON ledger_entries (leaf_hash)",
        "CREATE INDEX IF NOT EXISTS ledger_entries_subject ON ledger_entries (subject, idx)",
        f"CREATE TABLE IF NOT EXISTS ledger_nodes (level INTEGER NOT NULL, idx {bigint} NOT NULL,"
        f" hash {blob} NOT NULL, PRIMARY KEY (level, idx)){without_rowid}",
        f"CREATE TABLE IF NOT EXISTS ledger_checkpoints (size {bigint} PRIMARY KEY, note TEXT NOT NULL,"
        f" at TEXT NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS ledger_cosignatures (size {bigint} NOT NULL, witness TEXT NOT NULL,"
        f" line TEXT NOT NULL, at TEXT NOT NULL, PRIMARY KEY (size, witness))",
        f"CREATE TABLE IF NOT EXISTS ledger_witnesses (name TEXT PRIMARY KEY, vkey TEXT NOT NULL,"
        f" organization TEXT NOT NULL, registered_at TEXT NOT NULL, last_size {bigint})",
        "CREATE TABLE IF NOT EXISTS ledger_keys (vkey TEXT PRIMARY KEY, status TEXT NOT NULL,"
        " created_at TEXT NOT NULL, retired_at TEXT)",
    ]


_ENTRY_COLS = "idx, leaf_hash, entry, kind, actor, subject, at, payload"


def _row(r: Sequence[Any]) -> EntryRow:
    return EntryRow(int(r[0]), bytes(r[1]), bytes(r[2]), r[3], r[4], r[5], r[6], r[7])


class LedgerStore:
    """The ledger's tables. Methods are synchronous and must run in a worker thread, not on the event loop."""

    def __init__(self, db: Database, *, owns_db: bool = False) -> None:
        self.db = db
        self.engine = db.engine
        self.owns_db = owns_db  # opened for this store alone (LedgerStore.open): closed with it

    @classmethod
    def open(cls, database_url: str) -> LedgerStore:
        """A store on a Database of its own, for synchronous tools (CLI, tests, benches)."""
        store = cls(Database.open_sync(database_url), owns_db=True)
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
        return store

    def _tx(self, *, write: bool) -> Any:
        """Context manager yielding a cursor (execute/executemany/fetch*); writes are one transaction. Reads see
        immutable rows (entries, nodes, checkpoints are only ever added) and need none."""
        return self.db.sync_transaction() if write else self.db.sync_reader()

    def _lock_row(self, table: str) -> str:
        """The SELECT suffix that locks a row for the rest of the transaction (SQLite: BEGIN IMMEDIATE already
        holds the database's write lock)."""
        return " FOR UPDATE" if self.engine == "postgres" else ""

    def close(self) -> None:
        if self.owns_db:
            self.db.close_sync()

    def _q(self, sql: str) -> str:
        return sql

    # -- schema

    def migrate(self) -> None:
        ddl = _ddl("BLOB", "INTEGER", " WITHOUT ROWID") if self.engine == "sqlite" else _ddl("BYTEA", "BIGINT", "")
        self.db.call(lambda: self.db.migrate("ledger", [ddl], legacy="ledger_schema_version"))
        with self._tx(write=True) as cur:
            cur.execute("INSERT INTO ledger_seq (id, next_index) VALUES (1, 0) ON CONFLICT (id) DO NOTHING")
            cur.execute("INSERT INTO ledger_tree (id, size, frontier) VALUES (1, 0, ?) ON CONFLICT (id) DO NOTHING",
                        (b"",))

    # -- sequencing

    def append(self, rows: Sequence[NewEntry]) -> list[int]:
        """Give each row the next index, in order, in one transaction. A row whose dedupe key exists keeps its
        earlier index and is not written again."""
        with self._tx(write=True) as cur:
            cur.execute(
                self._q("SELECT next_index FROM ledger_seq WHERE id = 1" + self._lock_row("ledger_seq"))
            )
            nxt = int(cur.fetchone()[0])
            indices: list[int] = []
            fresh: list[tuple[Any, ...]] = []
            seen: dict[str, int] = {}
            for r in rows:
                if r.dedupe is not None:
                    if r.dedupe in seen:
                        indices.append(seen[r.dedupe])
                        continue
                    cur.execute(self._q("SELECT idx FROM ledger_entries WHERE dedupe = ?"), (r.dedupe,))
                    hit = cur.fetchone()
                    if hit is not None:
                        indices.append(int(hit[0]))
                        continue
                    seen[r.dedupe] = nxt
                fresh.append(
                    (nxt, r.leaf_hash, r.entry, r.kind, r.actor, r.subject, r.at, r.payload, r.dedupe)
                )
                indices.append(nxt)
                nxt += 1
            if fresh:
                cur.executemany(
                    self._q(
                        f"INSERT INTO ledger_entries ({_ENTRY_COLS}, dedupe)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    ),
                    fresh,
                )
                cur.execute(self._q("UPDATE ledger_seq SET next_index = ? WHERE id = 1"), (nxt,))
            return indices

    def next_index(self) -> int:
        with self._tx(write=False) as cur:
            cur.execute(self._q("SELECT next_index FROM ledger_seq WHERE id = 1"))
            return int(cur.fetchone()[0])

    # -- integration

    def integrate(self, max_entries: int, step: IntegrationStep) -> Integration | None:
        """Hash up to `max_entries` sequenced entries into the tree and store the checkpoint, atomically."""
        with self._tx(write=True) as cur:
            cur.execute(
                self._q("SELECT size, frontier FROM ledger_tree WHERE id = 1" + self._lock_row("ledger_tree"))
            )
            size, blob = cur.fetchone()
            size, blob = int(size), bytes(blob)
            cur.execute(
                self._q("SELECT leaf_hash FROM ledger_entries WHERE idx >= ? AND idx < ? ORDER BY idx"),
                (size, size + max_entries),
            )
            leaves = [bytes(r[0]) for r in cur.fetchall()]
            frontier = [blob[i : i + 32] for i in range(0, len(blob), 32)]
            if not leaves:
                cur.execute(self._q("SELECT 1 FROM ledger_checkpoints WHERE size = ?"), (size,))
                if cur.fetchone() is not None:
                    return None
            result = step(size, frontier, leaves)
            if result.nodes:
                cur.executemany(
                    self._q("INSERT INTO ledger_nodes (level, idx, hash) VALUES (?, ?, ?)"), result.nodes
                )
            cur.execute(
                self._q("UPDATE ledger_tree SET size = ?, frontier = ? WHERE id = 1"),
                (result.size, b"".join(result.frontier)),
            )
            cur.execute(
                self._q(
                    "INSERT INTO ledger_checkpoints (size, note, at) VALUES (?, ?, ?)"
                    " ON CONFLICT (size) DO UPDATE SET note = excluded.note"
                ),
                (result.size, result.checkpoint_note, result.at),
            )
            return result

    def tree_state(self) -> tuple[int, list[bytes]]:
        with self._tx(write=False) as cur:
            cur.execute(self._q("SELECT size, frontier FROM ledger_tree WHERE id = 1"))
            size, blob = cur.fetchone()
            blob = bytes(blob)
            return int(size), [blob[i : i + 32] for i in range(0, len(blob), 32)]

    # -- reading the tree

    def nodes(self, ids: set[NodeId]) -> dict[NodeId, bytes]:
        """Stored perfect-subtree hashes in one round trip; level 0 is the leaf hash kept with each entry."""
        leaves = sorted(i for lvl, i in ids if lvl == 0)
        inner = sorted((lvl, i) for lvl, i in ids if lvl > 0)
        parts: list[str] = []
        args: list[int] = []
        if leaves:
            parts.append(
                f"SELECT 0, idx, leaf_hash FROM ledger_entries WHERE idx IN ({', '.join('?' * len(leaves))})"
            )
            args += leaves
        if inner:
            # OR of equalities, not a row-value IN: SQLite plans the OR form as primary-key lookups.
            cond = " OR ".join("(level = ? AND idx = ?)" for _ in inner)
            parts.append(f"SELECT level, idx, hash FROM ledger_nodes WHERE {cond}")
            args += [v for pair in inner for v in pair]
        if not parts:
            return {}
        with self._tx(write=False) as cur:
            cur.execute(self._q(" UNION ALL ".join(parts)), args)
            return {(int(lv), int(i)): bytes(h) for lv, i, h in cur.fetchall()}

    def tree_size(self) -> int:
        """Size of the newest checkpoint (the tree row and the checkpoint are written together)."""
        with self._tx(write=False) as cur:
            cur.execute(self._q("SELECT size FROM ledger_tree WHERE id = 1"))
            return int(cur.fetchone()[0])

    def node_run(self, level: int, start: int, end: int) -> list[bytes]:
        """Hashes of perfect subtrees (level, start..end-1) in order: the content of a tile."""
        with self._tx(write=False) as cur:
            if level == 0:
                cur.execute(
                    self._q("SELECT leaf_hash FROM ledger_entries WHERE idx >= ? AND idx < ? ORDER BY idx"),
                    (start, end),
                )
            else:
                cur.execute(
                    self._q(
                        "SELECT hash FROM ledger_nodes WHERE level = ? AND idx >= ? AND idx < ? ORDER BY idx"
                    ),
                    (level, start, end),
                )
            return [bytes(r[0]) for r in cur.fetchall()]

    def iter_nodes(self, max_size: int) -> Iterator[tuple[int, int, bytes]]:
        """All stored inner nodes inside the first `max_size` leaves, for export."""
        with self._tx(write=False) as cur:
            cur.execute(self._q("SELECT level, idx, hash FROM ledger_nodes ORDER BY level, idx"))
            rows = cur.fetchall()
        for lv, i, h in rows:
            if (int(i) + 1) << int(lv) <= max_size:
                yield int(lv), int(i), bytes(h)

    # -- entries

    def entries(self, start: int, end: int) -> list[EntryRow]:
        with self._tx(write=False) as cur:
            cur.execute(
                self._q(f"SELECT {_ENTRY_COLS} FROM ledger_entries WHERE idx >= ? AND idx < ? ORDER BY idx"),
                (start, end),
            )
            return [_row(r) for r in cur.fetchall()]

    def entry(self, index: int) -> EntryRow | None:
        rows = self.entries(index, index + 1)
        return rows[0] if rows else None

    def index_of_leaf(self, leaf_hash: bytes, below: int) -> int | None:
        with self._tx(write=False) as cur:
            cur.execute(
                self._q("SELECT MIN(idx) FROM ledger_entries WHERE leaf_hash = ? AND idx < ?"),
                (leaf_hash, below),
            )
            row = cur.fetchone()
            return None if row is None or row[0] is None else int(row[0])

    def entries_by_subject(self, subject: str, kind: str | None, after: int, limit: int) -> list[EntryRow]:
        sql = f"SELECT {_ENTRY_COLS} FROM ledger_entries WHERE subject = ? AND idx > ?"
        args: list[Any] = [subject, after]
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        sql += " ORDER BY idx LIMIT ?"
        args.append(limit)
        with self._tx(write=False) as cur:
            cur.execute(self._q(sql), args)
            return [_row(r) for r in cur.fetchall()]

    # -- checkpoints and cosignatures

    def latest_checkpoint(self) -> tuple[int, str] | None:
        with self._tx(write=False) as cur:
            cur.execute(self._q("SELECT size, note FROM ledger_checkpoints ORDER BY size DESC LIMIT 1"))
            row = cur.fetchone()
            return None if row is None else (int(row[0]), row[1])

    def checkpoint(self, size: int) -> str | None:
        with self._tx(write=False) as cur:
            cur.execute(self._q("SELECT note FROM ledger_checkpoints WHERE size = ?"), (size,))
            row = cur.fetchone()
            return None if row is None else str(row[0])

    def checkpoints(self) -> list[tuple[int, str]]:
        with self._tx(write=False) as cur:
            cur.execute(self._q("SELECT size, note FROM ledger_checkpoints ORDER BY size"))
            return [(int(s), n) for s, n in cur.fetchall()]

    def replace_checkpoint_note(self, size: int, note: str) -> None:
        with self._tx(write=True) as cur:
            cur.execute(self._q("UPDATE ledger_checkpoints SET note = ? WHERE size = ?"), (note, size))

    def add_cosignature(self, size: int, witness: str, line: str, at: str) -> None:
        """Store a cosignature and move the witness's high-water mark, in one transaction."""
        with self._tx(write=True) as cur:
            cur.execute(
                self._q(
                    "INSERT INTO ledger_cosignatures (size, witness, line, at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (size, witness) DO UPDATE SET line = excluded.line, at = excluded.at"
                ),
                (size, witness, line, at),
            )
            cur.execute(
                self._q(
                    "UPDATE ledger_witnesses SET last_size = ? WHERE name = ?"
                    " AND (last_size IS NULL OR last_size < ?)"
                ),
                (size, witness, size),
            )

    def cosignatures(self, size: int) -> list[tuple[str, str]]:
        with self._tx(write=False) as cur:
            cur.execute(
                self._q("SELECT witness, line FROM ledger_cosignatures WHERE size = ? ORDER BY witness"),
                (size,),
            )
            return [(w, ln) for w, ln in cur.fetchall()]

    def latest_cosigned_size(self) -> int | None:
        with self._tx(write=False) as cur:
            cur.execute(self._q("SELECT MAX(size) FROM ledger_cosignatures"))
            row = cur.fetchone()
            return None if row is None or row[0] is None else int(row[0])

    # -- witnesses and keys

    def add_witness(self, name: str, vkey: str, organization: str, at: str) -> bool:
        """Register a witness; False when the name is taken (its key is never silently replaced)."""
        with self._tx(write=True) as cur:
            cur.execute(
                self._q(
                    "INSERT INTO ledger_witnesses (name, vkey, organization, registered_at)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING"
                ),
                (name, vkey, organization, at),
            )
            return bool(cur.rowcount)

    def witnesses(self) -> list[dict[str, Any]]:
        with self._tx(write=False) as cur:
            cur.execute(
                self._q(
                    "SELECT name, vkey, organization, registered_at, last_size FROM ledger_witnesses"
                    " ORDER BY name"
                )
            )
            return [
                {
                    "name": n,
                    "vkey": v,
                    "organization": o,
                    "registered_at": r,
                    "last_cosigned_size": None if s is None else int(s),
                }
                for n, v, o, r, s in cur.fetchall()
            ]

    def record_key(self, vkey: str, status: str, at: str) -> None:
        with self._tx(write=True) as cur:
            if status == "retired":
                cur.execute(
                    self._q("UPDATE ledger_keys SET status = 'retired', retired_at = ? WHERE vkey = ?"),
                    (at, vkey),
                )
            cur.execute(
                self._q(
                    "INSERT INTO ledger_keys (vkey, status, created_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (vkey) DO NOTHING"
                ),
                (vkey, status, at),
            )

    def keys(self) -> list[dict[str, Any]]:
        with self._tx(write=False) as cur:
            cur.execute(
                self._q("SELECT vkey, status, created_at, retired_at FROM ledger_keys ORDER BY created_at")
            )
            return [
                {"vkey": v, "status": s, "created_at": c, "retired_at": r} for v, s, c, r in cur.fetchall()
            ]
