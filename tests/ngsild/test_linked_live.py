"""Linked-entity retrieval (join), nested pick/omit, orderBy and purge keep/drop over real HTTP."""

from __future__ import annotations

import httpx
import pytest
from tests.helpers import problem

BUILDING = "urn:ngsi-ld:Building:B1"
CITY = "urn:ngsi-ld:City:Hangzhou"
COUNTRY = "urn:ngsi-ld:Country:China"


@pytest.fixture
def client(app_client: httpx.Client) -> httpx.Client:
    return app_client  # in-process (no socket): these tests are about what a read answers, not about the wire


@pytest.fixture
def linked(client: httpx.Client) -> None:
    entities = [
        {"id": BUILDING, "type": "Building", "name": "Library",
         "locatedAt": {"type": "Relationship", "object": CITY}},
        {"id": CITY, "type": "City", "name": "Hangzhou", "population": 12_000_000,
         "isInCountry": {"type": "Relationship", "object": COUNTRY}},
        {"id": COUNTRY, "type": "Country", "name": "China"},
    ]
    assert client.post("/entityOperations/create", json=entities).status_code == 201


def test_inline_join_nests_the_linked_entity(client: httpx.Client, linked: None) -> None:
    got = client.get(f"/entities/{BUILDING}", params={"join": "inline"}).json()
    assert got["locatedAt"]["entity"]["id"] == CITY
    assert "entity" not in got["locatedAt"]["entity"]["isInCountry"]  # joinLevel 1 stops there
    two = client.get(f"/entities/{BUILDING}", params={"join": "inline", "joinLevel": 2}).json()
    assert two["locatedAt"]["entity"]["isInCountry"]["entity"]["name"]["value"] == "China"
    simple = client.get(f"/entities/{BUILDING}", params={"join": "inline", "options": "keyValues"}).json()
    assert simple["locatedAt"]["id"] == CITY and simple["locatedAt"]["name"] == "Hangzhou"


def test_flat_join_lists_linked_entities_once(client: httpx.Client, linked: None) -> None:
    got = client.get("/entities", params={"type": "Building,City", "join": "flat", "joinLevel": 2}).json()
    assert [e["id"] for e in got] == [BUILDING, CITY, COUNTRY]


def test_nested_pick_and_omit(client: httpx.Client, linked: None) -> None:
    got = client.get(f"/entities/{BUILDING}", params={"join": "inline", "pick": "id,locatedAt{id,name}"}).json()
    assert got == {"id": BUILDING, "locatedAt": {"type": "Relationship", "object": CITY, "entity": {
        "id": CITY, "name": {"type": "Property", "value": "Hangzhou"}}}}
    got = client.get(f"/entities/{BUILDING}", params={"join": "inline", "omit": "type,locatedAt{population}"}).json()
    assert "type" not in got and "population" not in got["locatedAt"]["entity"]
    assert got["locatedAt"]["entity"]["name"]["value"] == "Hangzhou"


@pytest.mark.parametrize("pick", ["id;name", "id,locatedAt{name", "id,locatedAt{{name}", "id,,name",
                                  "id,locatedAt{,name}", "id,locatedAt{}"])
def test_malformed_projections_are_400(client: httpx.Client, linked: None, pick: str) -> None:
    problem(client.get(f"/entities/{BUILDING}", params={"pick": pick}), 400, "BadRequestData")


def test_projection_that_selects_nothing_is_404(client: httpx.Client, linked: None) -> None:
    problem(client.get(f"/entities/{BUILDING}", params={"pick": "unknown"}), 404, "ResourceNotFound")
    problem(client.get(f"/entities/{BUILDING}", params={"omit": "id,type,name,locatedAt"}), 404, "ResourceNotFound")
    problem(client.get(f"/entities/{BUILDING}", params={"pick": "name", "omit": "name"}), 400, "BadRequestData")


def test_order_by(client: httpx.Client, linked: None) -> None:
    params = {"type": "Building,City,Country", "orderBy": "name"}
    assert [e["id"] for e in client.get("/entities", params=params).json()] == [COUNTRY, CITY, BUILDING]
    params["orderBy"] = "name;desc"
    assert [e["id"] for e in client.get("/entities", params=params).json()] == [BUILDING, CITY, COUNTRY]
    params["orderBy"] = "population,id"  # entities without a population come last
    assert [e["id"] for e in client.get("/entities", params=params).json()] == [CITY, BUILDING, COUNTRY]
    problem(client.get("/entities", params={**params, "orderBy": "name;sideways"}), 400, "BadRequestData")


def test_purge_keep_and_drop(client: httpx.Client, linked: None) -> None:
    assert client.delete("/entities", params={"type": "City", "drop": "population"}).status_code == 204
    assert "population" not in client.get(f"/entities/{CITY}").json()
    assert client.delete("/entities", params={"type": "City", "keep": "name"}).status_code == 204
    assert set(client.get(f"/entities/{CITY}").json()) == {"id", "type", "name"}
    problem(client.delete("/entities", params={"type": "City", "keep": "a", "drop": "b"}), 400, "BadRequestData")
    problem(client.delete("/entities"), 400, "BadRequestData")
