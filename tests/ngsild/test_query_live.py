"""Queries, batch operations and discovery over real HTTP, on both store engines."""

from __future__ import annotations

import json

import httpx
import pytest
from tests.helpers import problem


def sensor(n: int, **extra: object) -> dict:
    body = {
        "id": f"urn:ngsi-ld:AirQualityObserved:S{n:03d}",
        "type": "AirQualityObserved",
        "pm25": {"type": "Property", "value": 10 * n, "unitCode": "GQ",
                 "observedAt": f"2024-05-0{1 + n % 9}T08:00:00Z"},
        "status": {"type": "Property", "value": "ok" if n % 2 else "degraded"},
        "address": {"type": "Property", "value": {"city": "Hangzhou", "district": "Binjiang" if n < 5 else "Xihu"}},
        "refDevice": {"type": "Relationship", "object": f"urn:ngsi-ld:Device:D{n % 3}"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [120.20 + n * 0.01, 30.20]}},
    }
    body.update(extra)
    return body


@pytest.fixture
def client(app_client: httpx.Client) -> httpx.Client:
    return app_client  # in-process (no socket): these tests are about what a query answers, not about the wire


@pytest.fixture
def city(client: httpx.Client) -> list[dict]:
    items = [sensor(n) for n in range(1, 10)]
    items.append({"id": "urn:ngsi-ld:Streetlight:L1", "type": "Streetlight",
                  "status": {"type": "Property", "value": "ok"},
                  "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [120.215, 30.2]}}})
    r = client.post("/entityOperations/create", json=items)
    assert r.status_code == 201, r.text
    assert sorted(r.json()) == sorted(i["id"] for i in items)
    return items


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return sorted(e["id"].rsplit(":", 1)[1] for e in response.json())


@pytest.mark.parametrize("q, expected", [
    ("pm25>50", ["S006", "S007", "S008", "S009"]),
    ("pm25>=50;status==\"ok\"", ["S005", "S007", "S009"]),
    ("pm25<20|pm25>80", ["S001", "S009"]),
    ("(pm25<20|pm25>80);status==\"degraded\"", []),
    ("pm25==20..40", ["S002", "S003", "S004"]),
    ("pm25==10,90", ["S001", "S009"]),
    ("status!=\"ok\"", ["S002", "S004", "S006", "S008"]),
    ("status~=\"^deg\"", ["S002", "S004", "S006", "S008"]),
    ("address[district]==\"Xihu\"", ["S005", "S006", "S007", "S008", "S009"]),
    ("refDevice==\"urn:ngsi-ld:Device:D0\"", ["S003", "S006", "S009"]),
    ("pm25.unitCode==\"GQ\";pm25<30", ["S001", "S002"]),
    ("pm25.observedAt>=\"2024-05-08T00:00:00Z\"", ["S007", "S008"]),
    ("pm25", ["S001", "S002", "S003", "S004", "S005", "S006", "S007", "S008", "S009"]),
    ("!pm25", []),
])
def test_q_language(client: httpx.Client, city: list[dict], q: str, expected: list[str]) -> None:
    assert ids(client.get("/entities", params={"type": "AirQualityObserved", "q": q, "limit": 100})) == expected


def test_q_without_type_matches_every_type(client: httpx.Client, city: list[dict]) -> None:
    got = ids(client.get("/entities", params={"q": 'status=="ok"', "limit": 100}))
    assert got == ["L1", "S001", "S003", "S005", "S007", "S009"]


def test_type_expressions_and_ids(client: httpx.Client, city: list[dict]) -> None:
    assert len(client.get("/entities", params={"type": "Streetlight,AirQualityObserved", "limit": 50}).json()) == 10
    assert ids(client.get("/entities", params={"type": "Streetlight|Nothing"})) == ["L1"]
    got = client.get("/entities", params={"id": "urn:ngsi-ld:AirQualityObserved:S001,urn:ngsi-ld:Streetlight:L1",
                                          "type": "Streetlight,AirQualityObserved"})
    assert ids(got) == ["L1", "S001"]
    # the suite requires more than ids to select entities
    problem(client.get("/entities", params={"id": "urn:ngsi-ld:Streetlight:L1"}), 400, "BadRequestData")
    assert ids(client.get("/entities", params={"idPattern": "^urn:ngsi-ld:Air.*:S00[12]$"})) == ["S001", "S002"]


def test_attrs_pick_and_omit(client: httpx.Client, city: list[dict]) -> None:
    got = client.get("/entities", params={"type": "AirQualityObserved", "attrs": "pm25", "limit": 1}).json()[0]
    assert set(got) == {"id", "type", "pm25"}
    got = client.get("/entities", params={"type": "AirQualityObserved", "pick": "id,status", "limit": 1}).json()[0]
    assert set(got) == {"id", "status"}
    got = client.get("/entities", params={"type": "AirQualityObserved", "omit": "pm25,location", "limit": 1}).json()[0]
    assert "pm25" not in got and "location" not in got and "status" in got
    # attrs selects entities that have at least one of them
    assert ids(client.get("/entities", params={"attrs": "refDevice", "q": "pm25<25"})) == ["S001", "S002"]


def test_paging_count_and_links(client: httpx.Client, city: list[dict]) -> None:
    r = client.get("/entities", params={"type": "AirQualityObserved", "limit": 4, "offset": 0, "count": "true"})
    assert r.headers["NGSILD-Results-Count"] == "9"
    assert len(r.json()) == 4
    assert 'rel="next"' in r.headers["link"] and "offset=4" in r.headers["link"]
    r2 = client.get("/entities", params={"type": "AirQualityObserved", "limit": 4, "offset": 8})
    assert len(r2.json()) == 1 and 'rel="prev"' in r2.headers["link"]
    page1 = {e["id"] for e in r.json()}
    page2 = {e["id"] for e in client.get("/entities", params={"type": "AirQualityObserved", "limit": 4,
                                                               "offset": 4}).json()}
    assert not page1 & page2
    r = client.get("/entities", params={"type": "AirQualityObserved", "limit": 0, "count": "true"})
    assert r.json() == [] and r.headers["NGSILD-Results-Count"] == "9"


@pytest.mark.parametrize("params, expected", [
    ({"georel": "near;maxDistance==1500", "geometry": "Point", "coordinates": "[120.21,30.2]"},
     ["L1", "S001", "S002"]),
    ({"georel": "near;minDistance==6000", "geometry": "Point", "coordinates": "[120.21,30.2]"},
     ["S008", "S009"]),
    ({"georel": "within", "geometry": "Polygon",
      "coordinates": "[[[120.225,30.1],[120.255,30.1],[120.255,30.3],[120.225,30.3],[120.225,30.1]]]"},
     ["S003", "S004", "S005"]),
    ({"georel": "intersects", "geometry": "LineString", "coordinates": "[[120.23,30.0],[120.23,30.4]]"},
     ["S003"]),
    ({"georel": "equals", "geometry": "Point", "coordinates": "[120.27,30.2]"}, ["S007"]),
])
def test_geo_queries(client: httpx.Client, city: list[dict], params: dict, expected: list[str]) -> None:
    got = ids(client.get("/entities", params={"type": "AirQualityObserved,Streetlight", **params, "limit": 100}))
    assert got == expected


def test_geo_query_disjoint_and_contains(client: httpx.Client) -> None:
    def square(x: float, y: float) -> dict:
        ring = [[x, y], [x + 0.1, y], [x + 0.1, y + 0.1], [x, y + 0.1], [x, y]]
        return {"type": "GeoProperty", "value": {"type": "Polygon", "coordinates": [ring]}}

    park = {"id": "urn:ngsi-ld:Park:P1", "type": "Park", "location": square(120.0, 30.0)}
    far = {"id": "urn:ngsi-ld:Park:P2", "type": "Park", "location": square(121.0, 31.0)}
    assert client.post("/entityOperations/create", json=[park, far]).status_code == 201
    point = {"geometry": "Point", "coordinates": "[120.05,30.05]"}
    assert ids(client.get("/entities", params={"type": "Park", "georel": "contains", **point})) == ["P1"]
    assert ids(client.get("/entities", params={"type": "Park", "georel": "disjoint", **point})) == ["P2"]


@pytest.mark.parametrize("params", [
    {"type": "AirQualityObserved", "q": "pm25>"},
    {"type": "AirQualityObserved", "q": "(pm25>1"},
    {"type": "AirQualityObserved", "georel": "near;maxDistance==1", "geometry": "Point", "coordinates": "[1]"},
    {"type": "AirQualityObserved", "georel": "around", "geometry": "Point", "coordinates": "[1,2]"},
    {"type": "AirQualityObserved", "georel": "within", "geometry": "Polygon", "coordinates": "[[[0,0],[1,0],[1,1]]]"},
    {"type": "AirQualityObserved", "limit": "-1"},
    {"type": "AirQualityObserved", "limit": "abc"},
    {"idPattern": "(["},
    {"id": "not-a-uri"},
    {},
])
def test_invalid_queries_are_400(client: httpx.Client, city: list[dict], params: dict) -> None:
    problem(client.get("/entities", params=params), 400, "BadRequestData")


def test_unknown_parameters_and_options_are_invalid_requests(client: httpx.Client, city: list[dict]) -> None:
    problem(client.get("/entities", params={"type": "AirQualityObserved", "options": "bogus"}), 400,
            "InvalidRequest")
    problem(client.get("/entities", params={"type": "AirQualityObserved", "format": "bogus"}), 400,
            "InvalidRequest")
    problem(client.get("/entities", params={"type": "AirQualityObserved", "colour": "red"}), 400, "InvalidRequest")


def test_limit_above_maximum_is_refused(client: httpx.Client, city: list[dict]) -> None:
    r = client.get("/entities", params={"type": "AirQualityObserved", "limit": 100000})
    problem(r, 403, "TooManyResults")


def test_post_query(client: httpx.Client, city: list[dict]) -> None:
    body = {"type": "Query", "entities": [{"type": "AirQualityObserved"}], "q": "pm25>70",
            "geoQ": {"georel": "near;maxDistance==20000", "geometry": "Point", "coordinates": [120.2, 30.2]},
            "attrs": ["pm25"]}
    r = client.post("/entityOperations/query", json=body)
    assert ids(r) == ["S008", "S009"]
    assert set(r.json()[0]) == {"id", "type", "pm25"}


def test_batch_create_reports_per_entity_errors(client: httpx.Client, city: list[dict]) -> None:
    r = client.post("/entityOperations/create", json=[sensor(1), sensor(50), {"id": "bad id", "type": "X"}])
    assert r.status_code == 207
    body = r.json()
    assert body["success"] == ["urn:ngsi-ld:AirQualityObserved:S050"]
    errors = {e["entityId"]: e["error"]["type"].rsplit("/", 1)[1] for e in body["errors"]}
    assert errors == {"urn:ngsi-ld:AirQualityObserved:S001": "AlreadyExists", "bad id": "BadRequestData"}


def test_batch_upsert_update_merge_delete(client: httpx.Client, city: list[dict]) -> None:
    # upsert replace: the existing entity loses attributes not in the body; a new one is created
    r = client.post("/entityOperations/upsert", json=[
        {"id": "urn:ngsi-ld:AirQualityObserved:S001", "type": "AirQualityObserved", "pm25": 1},
        sensor(60)])
    assert r.status_code == 201 and r.json() == ["urn:ngsi-ld:AirQualityObserved:S060"]
    assert set(client.get("/entities/urn:ngsi-ld:AirQualityObserved:S001").json()) == {"id", "type", "pm25"}
    # upsert update: attributes are added, existing ones kept; nothing created -> 204
    r = client.post("/entityOperations/upsert", params={"options": "update"}, json=[
        {"id": "urn:ngsi-ld:AirQualityObserved:S002", "type": "AirQualityObserved", "no2": 7}])
    assert r.status_code == 204
    s2 = client.get("/entities/urn:ngsi-ld:AirQualityObserved:S002").json()
    assert s2["no2"]["value"] == 7 and s2["pm25"]["value"] == 20
    # update with noOverwrite leaves existing values alone
    r = client.post("/entityOperations/update", params={"options": "noOverwrite"}, json=[
        {"id": "urn:ngsi-ld:AirQualityObserved:S002", "pm25": 999, "o3": 3}])
    assert r.status_code == 207  # the kept pm25 is reported; o3 is added
    assert "pm25" in r.json()["errors"][0]["error"]["detail"]
    s2 = client.get("/entities/urn:ngsi-ld:AirQualityObserved:S002").json()
    assert s2["pm25"]["value"] == 20 and s2["o3"]["value"] == 3
    # update of a missing entity is a per-entity error
    r = client.post("/entityOperations/update", json=[{"id": "urn:ngsi-ld:AirQualityObserved:none", "pm25": 1}])
    assert r.status_code == 207 and r.json()["errors"][0]["error"]["status"] == 404
    # merge
    r = client.post("/entityOperations/merge", json=[{"id": "urn:ngsi-ld:AirQualityObserved:S003",
                                                      "pm25": {"value": 31}, "status": "urn:ngsi-ld:null"}])
    assert r.status_code == 204
    s3 = client.get("/entities/urn:ngsi-ld:AirQualityObserved:S003").json()
    assert s3["pm25"]["value"] == 31 and s3["pm25"]["unitCode"] == "GQ" and "status" not in s3
    # delete
    r = client.post("/entityOperations/delete", json=["urn:ngsi-ld:AirQualityObserved:S003",
                                                      "urn:ngsi-ld:AirQualityObserved:nope"])
    assert r.status_code == 207
    assert r.json()["success"] == ["urn:ngsi-ld:AirQualityObserved:S003"]
    problem(client.post("/entityOperations/delete", json={"not": "a list"}), 400, "BadRequestData")


def test_purge_by_type(client: httpx.Client, city: list[dict]) -> None:
    assert client.delete("/entities", params={"type": "Streetlight"}).status_code == 204
    assert client.get("/entities", params={"type": "Streetlight"}).json() == []
    assert len(client.get("/entities", params={"type": "AirQualityObserved", "limit": 50}).json()) == 9


def test_types_and_attributes(client: httpx.Client, city: list[dict]) -> None:
    types = client.get("/types").json()
    assert types["type"] == "EntityTypeList"
    assert sorted(types["typeList"]) == ["AirQualityObserved", "Streetlight"]
    details = {t["typeName"]: t for t in client.get("/types", params={"details": "true"}).json()}
    assert "pm25" in details["AirQualityObserved"]["attributeNames"]
    info = client.get("/types/AirQualityObserved").json()
    assert info["entityCount"] == 9
    kinds = {a["attributeName"]: a["attributeTypes"] for a in info["attributeDetails"]}
    assert kinds["refDevice"] == ["Relationship"] and kinds["location"] == ["GeoProperty"]
    problem(client.get("/types/Nothing"), 404, "ResourceNotFound")
    attrs = client.get("/attributes").json()
    assert {"pm25", "status", "location"} <= set(attrs["attributeList"])
    status = client.get("/attributes/status").json()
    assert status["attributeCount"] == 10 and sorted(status["typeNames"]) == ["AirQualityObserved", "Streetlight"]
    problem(client.get("/attributes/nothing"), 404, "ResourceNotFound")


def test_geojson_query_with_geometry_property(client: httpx.Client, city: list[dict]) -> None:
    r = client.get("/entities", params={"type": "Streetlight", "geometryProperty": "location"},
                   headers={"Accept": "application/geo+json"})
    fc = r.json()
    assert fc["type"] == "FeatureCollection"
    assert fc["features"][0]["geometry"] == {"type": "Point", "coordinates": [120.215, 30.2]}
    assert json.loads(json.dumps(fc))["features"][0]["properties"]["status"]["value"] == "ok"


def test_scope_queries(client: httpx.Client) -> None:
    items = [{"id": f"urn:ngsi-ld:Park:{n}", "type": "Park", "scope": scope} for n, scope in
             enumerate([["/Hangzhou/Binjiang/North"], ["/Hangzhou/Xihu/North"], ["/Hangzhou"], ["/Ningbo", "/Coast"]])]
    assert client.post("/entityOperations/create", json=items).status_code == 201

    def scoped(q: str) -> list[str]:
        return ids(client.get("/entities", params={"type": "Park", "scopeQ": q}))

    assert scoped("/Hangzhou/+/North") == ["0", "1"]
    assert scoped("/Hangzhou/#") == ["0", "1", "2"]
    assert scoped("/Hangzhou") == ["2"]
    assert scoped("/#") == ["0", "1", "2", "3"]
    assert scoped("/Ningbo;/Coast") == ["3"]
    assert scoped("/Ningbo,/Hangzhou") == ["2", "3"]
    problem(client.get("/entities", params={"type": "Park", "scopeQ": "Hangzhou"}), 400, "BadRequestData")
