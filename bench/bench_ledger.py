"""Ledger benchmarks: batched appends on SQLite and PostgreSQL, inclusion proofs, a 1,000-step consistency
chain.

Every figure is printed next to baselines measured in the same run on the same machine: the raw SHA-256
rate for a leaf hash and the raw rate of inserting the same rows into the same engine without the ledger.
Run: python -m bench ledger   (PostgreSQL: CIVICMESH_BENCH_PG, default postgresql://root@127.0.0.1:5432)
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from civicmesh.ledger import merkle
from civicmesh.ledger.log import Ledger
from civicmesh.ledger.note import Checkpoint, open_checkpoint

N_APPEND = 50_000
BATCH = 1_000
PG_BASE = os.environ.get("CIVICMESH_BENCH_PG", "postgresql://root@127.0.0.1:5432")
PG_DB = "civicmesh_ledger_bench"


def _items(n: int, offset: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "kind": "metering.record",
            "actor": "urn:org:logistics",
            "subject": f"urn:agreement:{i % 97}",
            "payload": {"quantity": i, "unit": "entities"},
        }
        for i in range(offset, offset + n)
    ]


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def raw_sha256_rate() -> float:
    entry = (
        b'{"actor":"urn:org:logistics","kind":"metering.record","payload_sha256":"' + b"a" * 64 + b'"}' * 2
    )
    n = 200_000
    t = time.perf_counter()
    for _ in range(n):
        merkle.leaf_hash(entry)
    return _rate(n, time.perf_counter() - t)


def _raw_rows(n: int) -> list[tuple[Any, ...]]:
    return [
        (
            i,
            hashlib.sha256(str(i).encode()).digest(),
            b"x" * 200,
            "metering.record",
            "urn:org:logistics",
            f"urn:agreement:{i % 97}",
            "2026-11-28T00:00:00Z",
        )
        for i in range(n)
    ]


def raw_sqlite_insert_rate(path: Path) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE raw (idx INTEGER PRIMARY KEY, h BLOB, e BLOB, k TEXT, a TEXT, s TEXT, t TEXT)")
    rows = _raw_rows(N_APPEND)
    t = time.perf_counter()
    for start in range(0, N_APPEND, BATCH):
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO raw VALUES (?, ?, ?, ?, ?, ?, ?)", rows[start : start + BATCH])
        conn.execute("COMMIT")
    rate = _rate(N_APPEND, time.perf_counter() - t)
    conn.close()
    return rate


def raw_pg_insert_rate(url: str) -> float:
    import psycopg

    n = N_APPEND // 2
    rows = _raw_rows(n)
    with psycopg.connect(url) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_raw")
        conn.execute(
            "CREATE TABLE bench_raw (idx BIGINT PRIMARY KEY, h BYTEA, e BYTEA, k TEXT, a TEXT, s TEXT,"
            " t TEXT)"
        )
        conn.commit()
        t = time.perf_counter()
        for start in range(0, n, BATCH):
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO bench_raw VALUES (%s, %s, %s, %s, %s, %s, %s)", rows[start : start + BATCH]
                )
        rate = _rate(n, time.perf_counter() - t)
        conn.execute("DROP TABLE bench_raw")
        conn.commit()
    return rate


def raw_sqlite_select_rate(path: Path) -> float:
    """Point SELECTs by primary key on the raw table: the floor under one-query proof generation."""
    conn = sqlite3.connect(path)
    picks = [random.randrange(N_APPEND) for _ in range(20_000)]
    t = time.perf_counter()
    for i in picks:
        conn.execute("SELECT h FROM raw WHERE idx = ?", (i,)).fetchone()
    rate = _rate(len(picks), time.perf_counter() - t)
    conn.close()
    return rate


def raw_pg_select_rate(url: str) -> float:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_point (idx BIGINT PRIMARY KEY, h BYTEA)")
        conn.execute(
            "INSERT INTO bench_point SELECT g, sha256(g::text::bytea) FROM generate_series(0, 9999) g"
            " ON CONFLICT DO NOTHING"
        )
        picks = [random.randrange(10_000) for _ in range(5_000)]
        t = time.perf_counter()
        for i in picks:
            conn.execute("SELECT h FROM bench_point WHERE idx = %s", (i,)).fetchone()
        rate = _rate(len(picks), time.perf_counter() - t)
        conn.execute("DROP TABLE bench_point")
    return rate


def ledger_append_rate(url: str, keys: Path, n: int) -> tuple[float, Ledger]:
    """Entries/s from append_many in batches of 1,000 through integration and a signed checkpoint."""
    ledger = Ledger.open(url, "bench.example/ledger", keys, batch_size=BATCH)
    batches = [_items(BATCH, s) for s in range(0, n, BATCH)]
    t = time.perf_counter()
    for batch in batches:
        ledger.append_many(batch)
    ledger.integrate()
    rate = _rate(n, time.perf_counter() - t)
    assert ledger.integrated_size() == n
    return rate, ledger


def _pg_url() -> str | None:
    try:
        import psycopg

        with psycopg.connect(f"{PG_BASE}/postgres", autocommit=True, connect_timeout=3) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {PG_DB}")
            conn.execute(f"CREATE DATABASE {PG_DB}")
        return f"{PG_BASE}/{PG_DB}"
    except Exception:
        return None


def _drop_pg_db() -> None:
    import psycopg

    with psycopg.connect(f"{PG_BASE}/postgres", autocommit=True, connect_timeout=3) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DB}")


def run() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    sha = raw_sha256_rate()
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        raw_sqlite = raw_sqlite_insert_rate(tmpdir / "raw.db")
        rate, ledger = ledger_append_rate(f"sqlite:///{tmpdir / 'ledger.db'}", tmpdir / "keys", N_APPEND)
        base = f"raw SHA-256 {sha:,.0f}/s; raw SQLite insert {raw_sqlite:,.0f} rows/s"
        rows.append(
            {
                "scenario": f"appends, SQLite, batches of {BATCH}",
                "value": rate,
                "unit": "entries/s",
                "baseline": base,
                "target": ">= 20,000",
                "met": rate >= 20_000,
            }
        )

        # inclusion proofs: generated from stored nodes (random leaves in a 50,000-entry tree) and verified
        size = ledger.integrated_size()
        cp, _ = open_checkpoint(ledger.checkpoint(), ledger.log_keys)
        picks = [random.randrange(size) for _ in range(5_000)]
        t = time.perf_counter()
        proofs = [ledger.inclusion_proof(i, size) for i in picks]
        gen = _rate(len(picks), time.perf_counter() - t)
        point = raw_sqlite_select_rate(tmpdir / "raw.db")
        rows.append(
            {
                "scenario": f"inclusion proofs generated, SQLite, tree of {size:,}",
                "value": gen,
                "unit": "proofs/s",
                "baseline": f"raw SQLite point SELECT {point:,.0f}/s",
                "target": ">= 5,000",
                "met": gen >= 5_000,
            }
        )
        decoded = [
            (p["leaf_index"], base64.b64decode(p["leaf_hash"]), [base64.b64decode(h) for h in p["proof"]])
            for p in proofs
        ]
        t = time.perf_counter()
        for index, leaf, proof in decoded:
            merkle.verify_inclusion(index, size, leaf, proof, cp.root)
        ver = _rate(len(decoded), time.perf_counter() - t)
        rows.append(
            {
                "scenario": "inclusion proofs verified (client side)",
                "value": ver,
                "unit": "proofs/s",
                "baseline": f"raw SHA-256 {sha:,.0f}/s",
                "target": ">= 5,000",
                "met": ver >= 5_000,
            }
        )
        ledger.close()

        # a 1,000-step consistency chain: 1,000 signed checkpoints, each verified and linked to the previous
        chain_ledger = Ledger.open(
            f"sqlite:///{tmpdir / 'chain.db'}", "bench.example/ledger", tmpdir / "keys"
        )
        checkpoints = []
        for i in range(1000):
            chain_ledger.append("citizen.milestone", "urn:org:hotline", f"urn:req:{i}", {"step": i})
            chain_ledger.integrate()
            checkpoints.append((chain_ledger.checkpoint(), chain_ledger.consistency_proof(max(1, i), i + 1)))
        keys = chain_ledger.log_keys
        chain_ledger.close()
        t = time.perf_counter()
        prev: Checkpoint | None = None
        for text, proof in checkpoints:
            cur, _ = open_checkpoint(text, keys)
            if prev is not None:
                merkle.verify_consistency(
                    prev.size, cur.size, [base64.b64decode(p) for p in proof["proof"]], prev.root, cur.root
                )
            prev = cur
        chain_ms = (time.perf_counter() - t) * 1000
        rows.append(
            {
                "scenario": "verify a 1,000-checkpoint consistency chain (signatures + proofs)",
                "value": chain_ms,
                "unit": "ms",
                "baseline": f"raw SHA-256 {sha:,.0f}/s",
                "target": "report (no target)",
                "met": True,
            }
        )

        pg = _pg_url()
        if pg is None:
            rows.append(
                {
                    "scenario": "appends, PostgreSQL",
                    "value": 0.0,
                    "unit": "entries/s",
                    "baseline": f"PostgreSQL unreachable at {PG_BASE}",
                    "target": ">= 10,000",
                    "met": False,
                }
            )
        else:
            raw_pg = raw_pg_insert_rate(pg)
            rate, pg_ledger = ledger_append_rate(pg, tmpdir / "keys", N_APPEND // 2)
            t = time.perf_counter()
            size = pg_ledger.integrated_size()
            picks = [random.randrange(size) for _ in range(2_000)]
            for i in picks:
                pg_ledger.inclusion_proof(i, size)
            pg_gen = _rate(len(picks), time.perf_counter() - t)
            pg_ledger.close()
            pg_point = raw_pg_select_rate(pg)
            _drop_pg_db()
            rows.append(
                {
                    "scenario": f"appends, PostgreSQL, batches of {BATCH}",
                    "value": rate,
                    "unit": "entries/s",
                    "baseline": f"raw SHA-256 {sha:,.0f}/s; raw PostgreSQL insert {raw_pg:,.0f} rows/s",
                    "target": ">= 10,000",
                    "met": rate >= 10_000,
                }
            )
            rows.append(
                {
                    "scenario": f"inclusion proofs generated, PostgreSQL, tree of {size:,}",
                    "value": pg_gen,
                    "unit": "proofs/s",
                    "baseline": f"raw PostgreSQL point SELECT {pg_point:,.0f}/s",
                    "target": ">= 5,000",
                    "met": pg_gen >= 5_000,
                }
            )
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
