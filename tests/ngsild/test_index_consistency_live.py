"""Writes re-index only what they touch; whatever the sequence of operations, the query index must equal the index
computed from scratch from the stored entities. Live over HTTP, checked in the database itself, both engines."""

from __future__ import annotations

import collections
import sqlite3
from typing import Any

import httpx
import orjson
from tests.conftest import LiveServer

from civicmesh.store.base import geometries, index_rows

LD = {"Content-Type": "application/ld+json"}
CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"


def vehicle(n: int, **extra: Any) -> dict[str, Any]:
    return {"id": f"urn:ngsi-ld:Vehicle:ix{n}", "type": "Vehicle", "@context": CORE,
            "speed": {"type": "Property", "value": 10 + n, "unitCode": "KMH", "observedAt": "2026-01-01T00:00:00Z"},
            "name": {"type": "Property", "value": f"car {n}"},
            "label": {"type": "LanguageProperty", "languageMap": {"en": "car", "zh": "车"}},
            "spec": {"type": "Property", "value": {"doors": 4, "fuel": ["petrol", "lpg"]}},
            "owner": {"type": "Relationship", "object": f"urn:ngsi-ld:Person:{n}"},
            "temperature": [{"type": "Property", "value": 20, "datasetId": "urn:ds:a"},
                            {"type": "Property", "value": 21, "datasetId": "urn:ds:b",
                             "accuracy": {"type": "Property", "value": 0.5}}],
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [120.1 + n / 100, 30.2]}},
            **extra}


def _rows(database_url: str, tenant: str) -> tuple[collections.Counter[Any], collections.Counter[Any], set[Any]]:
    """(actual index rows, index rows computed from the stored documents, geo mismatches) for one tenant."""
    docs_sql = "SELECT eid, doc FROM entities WHERE tenant = {p}"
    index_sql = ("SELECT a.eid, k.attr, k.path, a.atype, a.kind, a.num, a.txt FROM attr_index a "
                 "JOIN attr_keys k ON k.akey = a.akey JOIN entities e ON e.eid = a.eid WHERE e.tenant = {p}")
    geo_sql = ("SELECT g.eid, k.attr FROM geo g JOIN attr_keys k ON k.akey = g.akey JOIN entities e ON e.eid = g.eid "
               "WHERE e.tenant = {p}")
    types_sql = ("SELECT et.eid, t.iri FROM entity_types et JOIN terms t ON t.tkey = et.tkey "
                 "JOIN entities e ON e.eid = et.eid WHERE e.tenant = {p}")
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url[len("sqlite:///"):]) as conn:
            fetch = [conn.execute(sql.format(p="?"), (tenant,)).fetchall()
                     for sql in (docs_sql, index_sql, geo_sql, types_sql)]
    else:
        import psycopg

        with psycopg.connect(database_url) as conn:
            fetch = [conn.execute(sql.format(p="%s"), (tenant,)).fetchall()  # type: ignore[arg-type]
                     for sql in (docs_sql, index_sql, geo_sql, types_sql)]
    docs, index, geo, types = fetch
    expected: collections.Counter[Any] = collections.Counter()
    expected_geo, expected_types = collections.Counter(), collections.Counter()
    for eid, blob in docs:
        doc = orjson.loads(blob)
        expected.update((eid, *row[:4], None if row[4] is None else float(row[4]), row[5]) for row in index_rows(doc))
        expected_geo.update((eid, attr) for attr, _ in geometries(doc))
        expected_types.update((eid, t) for t in doc["type"])
    actual = collections.Counter((r[0], r[1], r[2], r[3], r[4], None if r[5] is None else float(r[5]), r[6])
                                 for r in index)
    problems = set()
    if collections.Counter(tuple(g) for g in geo) != expected_geo:
        problems.add("geo")
    if collections.Counter(tuple(t) for t in types) != expected_types:
        problems.add("types")
    return actual, expected, problems


def test_index_matches_a_full_rebuild_after_every_kind_of_write(server: LiveServer, tenant: str) -> None:
    h = {"NGSILD-Tenant": tenant}
    with httpx.Client(base_url=server.url + "/ngsi-ld/v1", headers=h, timeout=30) as c:
        def ok(r: httpx.Response) -> None:
            assert r.status_code < 300, r.text

        for n in range(4):
            ok(c.post("/entities", json=vehicle(n), headers=LD))
        e = "urn:ngsi-ld:Vehicle:ix"
        ok(c.post(f"/entities/{e}0/attrs", json={"@context": CORE, "speed": {"type": "Property", "value": 99},
                                                   "colour": {"type": "Property", "value": "red"}}, headers=LD))
        ok(c.patch(f"/entities/{e}0/attrs", json={"@context": CORE, "name": {"type": "Property", "value": "x"}},
                   headers=LD))
        ok(c.patch(f"/entities/{e}0/attrs/speed", json={"@context": CORE, "value": 7}, headers=LD))
        ok(c.delete(f"/entities/{e}0/attrs/name"))
        ok(c.delete(f"/entities/{e}0/attrs/temperature", params={"datasetId": "urn:ds:a"}))
        ok(c.patch(f"/entities/{e}1", json={"@context": CORE, "location": {"type": "GeoProperty", "value": {
            "type": "Point", "coordinates": [121.0, 31.0]}}, "spec": {"type": "Property", "value": {"doors": 2}}},
            headers=LD))
        ok(c.put(f"/entities/{e}2", json={"@context": CORE, "type": "Vehicle",
                                          "speed": {"type": "Property", "value": 1}}, headers=LD))
        ok(c.put(f"/entities/{e}3/attrs/owner", json={"@context": CORE, "type": "Relationship",
                                                       "object": "urn:ngsi-ld:Person:z"}, headers=LD))
        ok(c.post("/entityOperations/upsert", params={"options": "update"}, headers=LD, json=[
            {"id": f"{e}1", "type": "Car", "@context": CORE, "speed": {"type": "Property", "value": 5}},
            {"id": f"{e}4", "type": "Vehicle", "@context": CORE, "speed": {"type": "Property", "value": 4}},
            {"id": f"{e}3", "type": "Vehicle", "@context": CORE, "speed": {"type": "Property", "value": 3}}]))
        ok(c.post("/entityOperations/upsert", headers=LD, json=[vehicle(3, colour={"type": "Property", "value": 1})]))
        c.post("/entityOperations/update", params={"options": "noOverwrite"}, headers=LD, json=[
            {"id": f"{e}0", "type": "Vehicle", "@context": CORE, "colour": {"type": "Property", "value": "blue"},
             "weight": {"type": "Property", "value": 1200}}])
        ok(c.post("/entityOperations/merge", headers=LD, json=[
            {"id": f"{e}2", "type": "Vehicle", "@context": CORE, "speed": {"type": "Property", "value": 2},
             "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [120.5, 30.5]}}}]))
        ok(c.post("/entityOperations/delete", json=[f"{e}4"]))
        ok(c.post("/entities", json=vehicle(4), headers=LD))
        ok(c.delete(f"/entities/{e}3/attrs/location"))

    actual, expected, problems = _rows(server.settings.database_url, tenant)
    assert actual == expected, (actual - expected, expected - actual)
    assert not problems
