"""The NGSI-LD entity API over real HTTP, on both store engines."""

from __future__ import annotations

import re

import httpx
import pytest
from tests.helpers import problem

CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
DEFAULT = "https://uri.etsi.org/ngsi-ld/default-context/"


def vehicle(n: int = 1, **extra: object) -> dict:
    body = {
        "id": f"urn:ngsi-ld:Vehicle:V{n}",
        "type": "Vehicle",
        "brandName": {"type": "Property", "value": "Mercedes"},
        "speed": {"type": "Property", "value": 80 + n, "observedAt": "2024-03-01T10:00:00Z", "unitCode": "KMH"},
        "isParked": {"type": "Relationship", "object": "urn:ngsi-ld:OffStreetParking:P1"},
        "location": {"type": "GeoProperty",
                     "value": {"type": "Point", "coordinates": [round(120.2 + n / 100, 4), 30.2]}},
    }
    body.update(extra)
    return body


def test_create_then_retrieve_round_trips_the_entity(client: httpx.Client) -> None:
    r = client.post("/entities", json=vehicle())
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:V1"
    got = client.get("/entities/urn:ngsi-ld:Vehicle:V1").json()
    assert got["type"] == "Vehicle"
    assert got["speed"] == {"type": "Property", "value": 81, "observedAt": "2024-03-01T10:00:00Z", "unitCode": "KMH"}
    assert got["isParked"] == {"type": "Relationship", "object": "urn:ngsi-ld:OffStreetParking:P1"}
    assert got["location"]["value"] == {"type": "Point", "coordinates": [120.21, 30.2]}
    assert "createdAt" not in got


def test_create_twice_is_409_and_keeps_the_first(client: httpx.Client) -> None:
    client.post("/entities", json=vehicle())
    problem(client.post("/entities", json=vehicle(brandName={"type": "Property", "value": "Other"})), 409,
            "AlreadyExists")
    assert client.get("/entities/urn:ngsi-ld:Vehicle:V1").json()["brandName"]["value"] == "Mercedes"


def test_sys_attrs_concise_and_key_values_representations(client: httpx.Client) -> None:
    client.post("/entities", json=vehicle())
    sys = client.get("/entities/urn:ngsi-ld:Vehicle:V1", params={"options": "sysAttrs"}).json()
    assert sys["createdAt"].endswith("Z") and sys["speed"]["modifiedAt"].endswith("Z")
    kv = client.get("/entities/urn:ngsi-ld:Vehicle:V1", params={"options": "keyValues"}).json()
    assert kv == {"id": "urn:ngsi-ld:Vehicle:V1", "type": "Vehicle", "brandName": "Mercedes", "speed": 81,
                  "isParked": "urn:ngsi-ld:OffStreetParking:P1",
                  "location": {"type": "Point", "coordinates": [120.21, 30.2]}}
    concise = client.get("/entities/urn:ngsi-ld:Vehicle:V1", params={"format": "concise"}).json()
    assert concise["brandName"] == "Mercedes"
    assert concise["isParked"] == {"object": "urn:ngsi-ld:OffStreetParking:P1"}
    assert concise["speed"] == {"value": 81, "observedAt": "2024-03-01T10:00:00Z", "unitCode": "KMH"}


def test_concise_input_is_accepted(client: httpx.Client) -> None:
    body = {"id": "urn:ngsi-ld:Vehicle:C1", "type": "Vehicle", "brandName": "Volvo",
            "isParked": {"object": "urn:ngsi-ld:OffStreetParking:P1"},
            "location": {"type": "Point", "coordinates": [120.1, 30.1]}, "address": {"city": "Hangzhou"}}
    assert client.post("/entities", json=body).status_code == 201
    got = client.get("/entities/urn:ngsi-ld:Vehicle:C1").json()
    assert got["brandName"] == {"type": "Property", "value": "Volvo"}
    assert got["isParked"]["type"] == "Relationship"
    assert got["location"]["type"] == "GeoProperty"
    assert got["address"] == {"type": "Property", "value": {"city": "Hangzhou"}}


def test_user_context_in_link_header_expands_and_compacts(client: httpx.Client, server) -> None:
    ctx = {"@context": {"brandName": "https://example.org/vocab#brand", "Vehicle": "https://example.org/Vehicle"}}
    r = httpx.post(server.url + "/ngsi-ld/v1/jsonldContexts", json=ctx,
                   headers={"Content-Type": "application/ld+json"})
    assert r.status_code == 201, r.text
    url = r.headers["location"]
    link = f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
    assert client.post("/entities", json=vehicle(), headers={"Link": link}).status_code == 201
    # Read without the context: the core context shows full IRIs for the user's terms.
    plain = client.get("/entities/urn:ngsi-ld:Vehicle:V1").json()
    assert plain["type"] == "https://example.org/Vehicle"
    assert "https://example.org/vocab#brand" in plain
    # Read with it: short names again, and the Link header echoes the context.
    r = client.get("/entities/urn:ngsi-ld:Vehicle:V1", headers={"Link": link})
    assert r.json()["type"] == "Vehicle" and "brandName" in r.json()
    assert url in r.headers["link"]
    # JSON-LD answer carries the @context in the body.
    r = client.get("/entities/urn:ngsi-ld:Vehicle:V1", headers={"Link": link, "Accept": "application/ld+json"})
    assert r.json()["@context"] == url


def test_ld_json_needs_context_in_body_and_refuses_link(client: httpx.Client) -> None:
    body = vehicle() | {"@context": CORE}
    r = client.post("/entities", json=body, headers={"Content-Type": "application/ld+json",
                                                     "Link": f'<{CORE}>; rel="http://www.w3.org/ns/json-ld#context"'})
    problem(r, 400, "BadRequestData")
    problem(client.post("/entities", json=vehicle(), headers={"Content-Type": "application/ld+json"}), 400,
            "BadRequestData")
    r = client.post("/entities", json=body, headers={"Content-Type": "application/ld+json"})
    assert r.status_code == 201


def test_unknown_remote_context_is_503_without_waiting(client: httpx.Client) -> None:
    link = '<https://example.invalid/ctx.jsonld>; rel="http://www.w3.org/ns/json-ld#context"'
    problem(client.post("/entities", json=vehicle(), headers={"Link": link}), 503, "LdContextNotAvailable")


def test_bad_input_gets_precise_problems_and_writes_nothing(client: httpx.Client) -> None:
    problem(client.post("/entities", content=b"{not json", headers={"Content-Type": "application/json"}), 400,
            "InvalidRequest")
    problem(client.post("/entities", content=b"{}", headers={"Content-Type": "text/plain"}), 415,
            "UnsupportedMediaType")
    problem(client.post("/entities", json=vehicle(), headers={"Accept": "text/html"}), 406, "NotAcceptable")
    body = problem(client.post("/entities", json=vehicle(id="not a uri")), 400, "BadRequestData")
    assert "URI" in body["detail"]
    problem(client.post("/entities", json={"id": "urn:ngsi-ld:X:1"}), 400, "BadRequestData")
    bad_geo = vehicle(location={"type": "GeoProperty", "value": {"type": "Point", "coordinates": [500, 1]}})
    assert "longitude" in problem(client.post("/entities", json=bad_geo), 400, "BadRequestData")["detail"]
    bad_rel = vehicle(isParked={"type": "Relationship", "object": "no uri"})
    problem(client.post("/entities", json=bad_rel), 400, "BadRequestData")
    # None of those left an entity behind.
    r = client.get("/entities", params={"type": "Vehicle"})
    assert r.status_code in (200, 404)
    if r.status_code == 200:
        assert r.json() == []


def test_oversized_body_is_413(client: httpx.Client) -> None:
    huge = vehicle(blob={"type": "Property", "value": "x" * 300_000})
    problem(client.post("/entities", json=huge), 413, "PayloadTooLarge")


def test_unknown_tenant_read_is_404_nonexistent_tenant(server) -> None:
    r = httpx.get(server.url + "/ngsi-ld/v1/entities", params={"type": "Vehicle"},
                  headers={"NGSILD-Tenant": "never-written"})
    problem(r, 404, "NonexistentTenant")


def test_tenants_are_isolated(client: httpx.Client, server) -> None:
    client.post("/entities", json=vehicle())
    other = httpx.get(server.url + "/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:V1")
    assert other.status_code == 404


def test_trailing_slashes_are_accepted(client: httpx.Client) -> None:
    assert client.post("/entities/", json=vehicle()).status_code == 201
    assert client.get("/entities/", params={"type": "Vehicle"}).status_code == 200
    r = client.post("/entities/urn:ngsi-ld:Vehicle:V1/attrs/", json={"colour": {"type": "Property", "value": "red"}})
    assert r.status_code == 204


def test_append_update_partial_and_delete_attributes(client: httpx.Client) -> None:
    client.post("/entities", json=vehicle())
    eid = "urn:ngsi-ld:Vehicle:V1"
    # append with noOverwrite: existing attribute is reported, new one is added
    r = client.post(f"/entities/{eid}/attrs", params={"options": "noOverwrite"},
                    json={"speed": {"type": "Property", "value": 1}, "colour": {"type": "Property", "value": "red"}})
    assert r.status_code == 207
    # the 207 body names attributes by their expanded IRIs, as the ETSI suite expects
    assert r.json()["updated"] == [DEFAULT + "colour"]
    assert r.json()["notUpdated"][0]["attributeName"] == DEFAULT + "speed"
    assert client.get(f"/entities/{eid}").json()["speed"]["value"] == 81
    # update replaces existing attributes and appends missing ones
    r = client.patch(f"/entities/{eid}/attrs", json={"speed": {"type": "Property", "value": 50, "unitCode": "KMH"},
                                                     "extra": {"type": "Property", "value": 1}})
    assert r.status_code == 204
    got = client.get(f"/entities/{eid}").json()
    assert got["speed"]["value"] == 50 and got["extra"]["value"] == 1
    # partial attribute update keeps the other members
    assert client.patch(f"/entities/{eid}/attrs/speed", json={"value": 60}).status_code == 204
    speed = client.get(f"/entities/{eid}").json()["speed"]
    assert speed["value"] == 60 and speed["unitCode"] == "KMH"
    problem(client.patch(f"/entities/{eid}/attrs/missing", json={"value": 1}), 404, "ResourceNotFound")
    # replace one attribute
    assert client.put(f"/entities/{eid}/attrs/colour", json={"type": "Property", "value": "blue"}).status_code == 204
    assert client.get(f"/entities/{eid}").json()["colour"] == {"type": "Property", "value": "blue"}
    # delete it
    assert client.delete(f"/entities/{eid}/attrs/colour").status_code == 204
    assert "colour" not in client.get(f"/entities/{eid}").json()
    problem(client.delete(f"/entities/{eid}/attrs/colour"), 404, "ResourceNotFound")


def test_multi_attributes_with_dataset_ids(client: httpx.Client) -> None:
    body = vehicle(temperature=[{"type": "Property", "value": 20},
                                {"type": "Property", "value": 21, "datasetId": "urn:ngsi-ld:Dataset:sensorB"}])
    assert client.post("/entities", json=body).status_code == 201
    eid = body["id"]
    temps = client.get(f"/entities/{eid}").json()["temperature"]
    assert {t.get("datasetId") for t in temps} == {None, "urn:ngsi-ld:Dataset:sensorB"}
    only_b = client.get(f"/entities/{eid}", params={"datasetId": "urn:ngsi-ld:Dataset:sensorB"}).json()
    assert only_b["temperature"]["value"] == 21
    r = client.delete(f"/entities/{eid}/attrs/temperature", params={"datasetId": "urn:ngsi-ld:Dataset:sensorB"})
    assert r.status_code == 204
    assert client.get(f"/entities/{eid}").json()["temperature"] == {"type": "Property", "value": 20}
    dup = vehicle(2, temperature=[{"type": "Property", "value": 1}, {"type": "Property", "value": 2}])
    problem(client.post("/entities", json=dup), 400, "BadRequestData")


def test_merge_patch_and_ngsi_ld_null(client: httpx.Client) -> None:
    client.post("/entities", json=vehicle())
    eid = "urn:ngsi-ld:Vehicle:V1"
    r = client.patch(f"/entities/{eid}", json={"brandName": "urn:ngsi-ld:null", "speed": {"value": 99},
                                               "colour": "green"})
    assert r.status_code == 204, r.text
    got = client.get(f"/entities/{eid}").json()
    assert "brandName" not in got
    assert got["speed"]["value"] == 99 and got["speed"]["unitCode"] == "KMH"
    assert got["colour"]["value"] == "green"
    r = client.patch(f"/entities/{eid}", json={"colour": "red"},
                     headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 204


def test_replace_entity_keeps_only_new_attributes(client: httpx.Client) -> None:
    client.post("/entities", json=vehicle())
    eid = "urn:ngsi-ld:Vehicle:V1"
    r = client.put(f"/entities/{eid}", json={"type": "Vehicle", "colour": {"type": "Property", "value": "red"}})
    assert r.status_code == 204
    got = client.get(f"/entities/{eid}").json()
    assert set(got) == {"id", "type", "colour"}


def test_delete_entity(client: httpx.Client) -> None:
    client.post("/entities", json=vehicle())
    assert client.delete("/entities/urn:ngsi-ld:Vehicle:V1").status_code == 204
    problem(client.get("/entities/urn:ngsi-ld:Vehicle:V1"), 404, "ResourceNotFound")
    problem(client.delete("/entities/urn:ngsi-ld:Vehicle:V1"), 404, "ResourceNotFound")


def test_language_property_and_lang_parameter(client: httpx.Client) -> None:
    body = vehicle(name={"type": "LanguageProperty", "languageMap": {"en": "West Lake", "zh": "西湖"}})
    client.post("/entities", json=body)
    got = client.get("/entities/urn:ngsi-ld:Vehicle:V1", params={"lang": "zh"}).json()
    assert got["name"] == {"type": "Property", "value": "西湖", "lang": "zh"}
    kv = client.get("/entities/urn:ngsi-ld:Vehicle:V1", params={"lang": "en", "options": "keyValues"}).json()
    assert kv["name"] == "West Lake"


def test_geojson_representation(client: httpx.Client) -> None:
    client.post("/entities", json=vehicle())
    r = client.get("/entities/urn:ngsi-ld:Vehicle:V1", headers={"Accept": "application/geo+json"})
    assert r.headers["content-type"].startswith("application/geo+json")
    feature = r.json()
    assert feature["type"] == "Feature" and feature["geometry"]["type"] == "Point"
    r = client.get("/entities", params={"type": "Vehicle"}, headers={"Accept": "application/geo+json"})
    assert r.json()["type"] == "FeatureCollection" and len(r.json()["features"]) == 1


@pytest.mark.parametrize("scope", ["/Hangzhou/Binjiang", ["/A", "/B/C"]])
def test_scope_round_trip(client: httpx.Client, scope: object) -> None:
    client.post("/entities", json=vehicle(scope=scope))
    got = client.get("/entities/urn:ngsi-ld:Vehicle:V1").json()
    assert got["scope"] == scope  # one scope reads back as a string, several as a list


@pytest.mark.live  # starts its own server
def test_hosted_contexts_survive_a_restart(tmp_path) -> None:
    from tests.conftest import start_server

    url = f"sqlite:///{tmp_path / 'restart.db'}"
    ctx = {"@context": {"speedKmh": "https://example.org/vocab#speedKmh"}}
    first = start_server(url)
    try:
        r = httpx.post(first.url + "/ngsi-ld/v1/jsonldContexts", json=ctx,
                       headers={"Content-Type": "application/ld+json"})
        assert r.status_code == 201
        context_id = r.headers["location"].rsplit("/", 1)[1]
    finally:
        first.stop()
    second = start_server(url)
    try:
        got = httpx.get(f"{second.url}/ngsi-ld/v1/jsonldContexts/{context_id}")
        assert got.status_code == 200 and got.json() == ctx
        assert httpx.delete(f"{second.url}/ngsi-ld/v1/jsonldContexts/{context_id}").status_code == 204
        assert httpx.get(f"{second.url}/ngsi-ld/v1/jsonldContexts/{context_id}").status_code == 404
    finally:
        second.stop()


def test_health_and_metrics(client: httpx.Client, server) -> None:
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    client.post("/entities", json=vehicle())
    assert client.get("/entities/urn:ngsi-ld:Vehicle:nobody").status_code == 404
    text = httpx.get(server.url + "/metrics").text
    assert 'civicmesh_http_requests_total{method="POST",route="/ngsi-ld/v1/entities",status="201"}' in text
    # Labelled by route template, not by path: entity ids do not become label values.
    assert "urn:ngsi-ld:Vehicle:nobody" not in text
    assert re.search(r'civicmesh_http_requests_total\{method="GET",route="/ngsi-ld/v1/entities/\{[a-z_:]+\}",'
                     r'status="404"\}', text)
    assert 'civicmesh_http_request_seconds_count{method="POST",route="/ngsi-ld/v1/entities"}' in text
    assert "civicmesh_event_relay_position" in text
