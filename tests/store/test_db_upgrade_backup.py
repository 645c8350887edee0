"""`civicmesh db upgrade / backup / restore` on both engines, and an upgrade of a database made by cbc25d1.

cbc25d1 is the last commit before the one database seam: each room kept a `<room>_schema_version` table, and
the citizen, exchange and ledger rooms opened their own connections. Its code fills a database in a subprocess
(from `git archive` of that commit); this release must open it, move the versions into `schema_migrations`,
and find every row where it was.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from civicmesh.ledger.keys import load_or_create_log_key
from civicmesh.ledger.log import Ledger
from civicmesh.store import Database, open_store
from civicmesh.store.citizen import CitizenStore
from civicmesh.store.cli import db_app, upgrade_all
from civicmesh.store.exchange import ExchangeStore

BASE = "cbc25d1"
ORIGIN = "city.example/ledger"
ENTITIES = [{"id": f"urn:ngsi-ld:Streetlight:up-{i}", "type": "Streetlight",
             "powerState": {"type": "Property", "value": "on" if i % 2 else "off"},
             "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [120.1 + i / 100, 30.2]}}}
            for i in range(3)]

OLD_FILL = r'''
import asyncio, json, sys
from pathlib import Path
url, keys, entities = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])

async def main() -> None:
    from civicmesh.loader import load_entities
    from civicmesh.store import open_store
    from civicmesh.store.citizen import open_citizen_store
    from civicmesh.store.exchange import open_exchange_store
    store = open_store(url)
    await store.open()
    result = await load_entities(store, None, entities,
                                 context="https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld")
    assert not result.errors, result.errors
    await store.close()
    citizen = open_citizen_store(url)
    await citizen.connect()
    await citizen.migrate()
    await citizen.create_request({"token": "tok-1", "service_code": "pothole", "state": "received",
                                  "description": "a hole", "requested_at": "2026-11-01T00:00:00Z",
                                  "updated_at": "2026-11-01T00:00:00Z"}, [("triage", None, "manual")])
    await citizen.close()
    exchange = open_exchange_store(url)
    await exchange.connect()
    await exchange.migrate()
    doc = {"id": "urn:agreement:1", "product": "p", "provider": "a", "consumer": "b", "state": "REQUESTED",
           "created_at": "2026-11-01T00:00:00Z"}
    await exchange.add_negotiation(doc, {"negotiation": doc["id"], "at": doc["created_at"], "from": None,
                                         "to": "REQUESTED", "actor": "bob@b", "reason": "asked"})
    await exchange.close()

asyncio.run(main())
from civicmesh.ledger.log import Ledger
ledger = Ledger.open(url, "city.example/ledger", keys)
for i in range(5):
    ledger.append("data-rights.registered", "urn:org:a", f"urn:asset:{i}", {"n": i})
ledger.integrate()
ledger.close()
'''


def _old_source(tmp_path: Path) -> Path:
    """src/ of cbc25d1, exported from this repository's history."""
    root = Path(__file__).resolve().parents[2]
    if shutil.which("git") is None or subprocess.run(["git", "-C", str(root), "cat-file", "-e", BASE],
                                                     capture_output=True).returncode != 0:
        pytest.skip(f"commit {BASE} is not in this checkout's history")
    out = tmp_path / "old"
    out.mkdir()
    archive = subprocess.run(["git", "-C", str(root), "archive", BASE, "src"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
    return out / "src"


async def _read_back(url: str) -> dict[str, Any]:
    db = Database.from_url(url)
    store = open_store(db)
    await store.open()
    try:
        docs = [await store.get("", e["id"]) for e in ENTITIES]
        request = await CitizenStore(db).get_request(1)
        negotiation = await ExchangeStore(db).get_negotiation("urn:agreement:1")
        steps = await ExchangeStore(db).transitions("urn:agreement:1")
        async with db.transaction() as tx:
            legacy = [t for t in ("schema_version", "citizen_schema_version", "exchange_schema_version",
                                  "ledger_schema_version", "alerts_schema_version", "ingest_schema_version")
                      if await db._has_table(tx, t)]
        return {"docs": docs, "request": request, "negotiation": negotiation, "steps": steps, "legacy": legacy,
                "versions": await db.versions()}
    finally:
        await store.close()


def test_a_database_made_by_cbc25d1_upgrades_with_its_data(private_database: str, tmp_path: Path) -> None:
    import json

    old_src = _old_source(tmp_path)
    keys = tmp_path / "keys"
    env = {**os.environ, "PYTHONPATH": str(old_src)}
    made = subprocess.run([sys.executable, "-c", OLD_FILL, private_database, str(keys), json.dumps(ENTITIES)],
                          env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert made.returncode == 0, made.stderr[-3000:]

    versions = asyncio.run(upgrade_all(private_database))
    assert set(versions) == {"store", "exchange", "citizen", "ledger", "alerts", "ingest"}
    assert versions["store"] >= 5 and versions["citizen"] == versions["ledger"] == 1 and versions["exchange"] == 2
    # a second upgrade finds nothing to do
    assert asyncio.run(upgrade_all(private_database)) == versions

    back = asyncio.run(_read_back(private_database))
    assert back["legacy"] == []
    assert [d["id"] if d else None for d in back["docs"]] == [e["id"] for e in ENTITIES]
    assert back["request"]["token"] == "tok-1" and back["request"]["state"] == "received"
    assert back["negotiation"]["state"] == "REQUESTED"
    assert [s["to_state"] for s in back["steps"]] == ["REQUESTED"]

    ledger = Ledger.open(private_database, ORIGIN, keys)
    try:
        assert ledger.integrated_size() == 5
        assert [r.subject for r in ledger.store.entries(0, 5)] == [f"urn:asset:{i}" for i in range(5)]
        assert ledger.inclusion_proof(3, 5)["leaf_index"] == 3
        assert load_or_create_log_key(keys, ORIGIN).verifier.encode() in [k["vkey"] for k in ledger.store.keys()]
    finally:
        ledger.close()


def test_backup_change_restore_brings_the_data_back(private_database: str, tmp_path: Path) -> None:
    if private_database.startswith("postgresql") and shutil.which("pg_dump") is None:
        pytest.skip("pg_dump is not installed")
    asyncio.run(upgrade_all(private_database))

    async def write(value: str, extra: bool) -> None:
        from civicmesh.loader import load_entities

        store = open_store(private_database)
        await store.open()
        try:
            entities = [{**ENTITIES[0], "powerState": {"type": "Property", "value": value}}]
            if extra:
                entities.append(ENTITIES[1])
            result = await load_entities(store, None, entities,
                                         context="https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld")
            assert not result.errors
        finally:
            await store.close()

    async def read() -> list[Any]:
        store = open_store(private_database)
        await store.open()
        try:
            return [await store.get("", e["id"]) for e in ENTITIES[:2]]
        finally:
            await store.close()

    asyncio.run(write("on", extra=False))
    backup = tmp_path / "civicmesh.backup"
    runner = CliRunner()
    result = runner.invoke(db_app, ["backup", str(backup), "--database", private_database])
    assert result.exit_code == 0, result.output
    assert backup.stat().st_size > 0

    asyncio.run(write("off", extra=True))  # the change the restore must undo
    changed = asyncio.run(read())
    assert changed[1] is not None

    result = runner.invoke(db_app, ["restore", str(backup), "--database", private_database])
    assert result.exit_code == 0, result.output
    first, second = asyncio.run(read())
    assert second is None  # created after the backup: gone
    assert first is not None
    power = next(iter(v for k, v in first["attrs"].items() if k.endswith("powerState")))
    assert power[0]["value"] == "on"

    result = runner.invoke(db_app, ["restore", str(tmp_path / "missing.backup"), "--database", private_database])
    assert result.exit_code == 2 and "no backup file" in result.output
