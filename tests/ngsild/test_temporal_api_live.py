"""The temporal API as a client sees it, over real HTTP on both engines: representations, filters, paging,
temporal writes, instance operations and error answers (NGSI-LD 5.6.11-5.6.16, 5.7.3-5.7.4, 6.3.10)."""

from __future__ import annotations

import time

import httpx
from tests.helpers import problem

CAR = "urn:ngsi-ld:Vehicle:TA1"


def car(entity_id: str = CAR, **attrs: object) -> dict:
    return {"id": entity_id, "type": "Vehicle", **attrs}


SPEEDS = [{"type": "Property", "value": v, "observedAt": f"2024-03-01T10:{m:02d}:00Z"}
          for v, m in ((50, 0), (70, 10), (90, 20))]
FUEL = [{"type": "Property", "value": 60, "observedAt": "2024-03-01T10:05:00Z"},
        {"type": "Property", "value": 55, "observedAt": "2024-03-01T10:15:00Z"},
        {"type": "Property", "value": 40, "observedAt": "2024-03-01T10:25:00Z",
         "datasetId": "urn:ngsi-ld:Dataset:tank2"}]


def create(client: httpx.Client, body: dict) -> None:
    r = client.post("/temporal/entities", json=body)
    assert r.status_code == 201, r.text


def wait_for(check, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def test_normalized_attributes_are_arrays_and_temporal_values_use_the_type_member(client: httpx.Client) -> None:
    create(client, car(
        speed=SPEEDS[:1],
        parkedIn=[{"type": "Relationship", "object": "urn:ngsi-ld:Parking:P1", "observedAt": "2024-03-01T10:00:00Z"},
                  {"type": "Relationship", "object": "urn:ngsi-ld:Parking:P2", "observedAt": "2024-03-01T11:00:00Z"}],
        label=[{"type": "LanguageProperty", "languageMap": {"en": "car", "fr": "voiture"},
                "observedAt": "2024-03-01T10:00:00Z"}],
        specs=[{"type": "JsonProperty", "json": {"doors": 4}, "observedAt": "2024-03-01T10:00:00Z"}],
        category=[{"type": "VocabProperty", "vocab": "sedan", "observedAt": "2024-03-01T10:00:00Z"}]))
    normalized = client.get(f"/temporal/entities/{CAR}").json()
    assert isinstance(normalized["speed"], list) and normalized["speed"][0]["value"] == 50
    simple = client.get(f"/temporal/entities/{CAR}", params={"options": "temporalValues"}).json()
    assert simple["parkedIn"] == {"type": "Relationship", "objects": [
        ["urn:ngsi-ld:Parking:P1", "2024-03-01T10:00:00Z"], ["urn:ngsi-ld:Parking:P2", "2024-03-01T11:00:00Z"]]}
    assert simple["label"]["languageMaps"] == [[{"languageMap": {"en": "car", "fr": "voiture"}},
                                                "2024-03-01T10:00:00Z"]]
    assert simple["specs"] == {"type": "JsonProperty", "jsons": [[{"json": {"doors": 4}}, "2024-03-01T10:00:00Z"]]}
    assert simple["category"] == {"type": "VocabProperty", "vocabs": [[{"vocab": "sedan"}, "2024-03-01T10:00:00Z"]]}
    # format wins over options
    both = client.get(f"/temporal/entities/{CAR}", params={"format": "temporalValues", "options": "aggregatedValues",
                                                           "aggrMethods": "sum"}).json()
    assert both["speed"] == {"type": "Property", "values": [[50, "2024-03-01T10:00:00Z"]]}
    problem(client.get(f"/temporal/entities/{CAR}", params={"format": "fancy"}), 400, "InvalidRequest")


def test_a_temporal_create_makes_the_entity_queryable_and_deletions_show_as_typed_nulls(client: httpx.Client) -> None:
    create(client, car(speed=SPEEDS, parkedIn=[{"type": "Relationship", "object": "urn:ngsi-ld:Parking:P1",
                                                "observedAt": "2024-03-01T10:00:00Z"}]))
    current = client.get(f"/entities/{CAR}").json()
    assert current["speed"]["value"] == 90  # the most recent instance is the entity's value
    matched = client.get("/temporal/entities", params={"type": "Vehicle", "q": "speed>80"}).json()
    assert [e["id"] for e in matched] == [CAR]
    assert client.get("/temporal/entities", params={"type": "Vehicle", "q": "speed<80"}).json() == []
    assert client.delete(f"/entities/{CAR}/attrs/parkedIn").status_code == 204
    deleted = wait_for(lambda: client.get(f"/temporal/entities/{CAR}", params={"timeproperty": "deletedAt"}).json()
                       .get("parkedIn"))
    assert deleted[0]["object"] == "urn:ngsi-ld:null" and deleted[0]["type"] == "Relationship"
    assert "deletedAt" in deleted[0] and "speed" not in client.get(
        f"/temporal/entities/{CAR}", params={"timeproperty": "deletedAt"}).json()


def test_temporal_update_replaces_instances_observed_at_the_same_time(client: httpx.Client) -> None:
    create(client, car(speed=SPEEDS[:2]))
    again = [{"type": "Property", "value": 51, "observedAt": "2024-03-01T10:00:00Z"}, SPEEDS[2]]
    assert client.post("/temporal/entities", json=car(speed=again)).status_code == 204
    values = client.get(f"/temporal/entities/{CAR}", params={"options": "temporalValues"}).json()["speed"]["values"]
    assert sorted(v[0] for v in values) == [51, 70, 90]


def test_attrs_pick_omit_and_dataset_filters(client: httpx.Client) -> None:
    create(client, car(speed=SPEEDS, fuel=FUEL))
    url = f"/temporal/entities/{CAR}"
    assert set(client.get(url, params={"pick": "speed"}).json()) == {"speed"}
    assert set(client.get(url, params={"omit": "type,speed"}).json()) == {"id", "fuel"}
    problem(client.get(url, params={"pick": "unknown"}), 404, "ResourceNotFound")
    problem(client.get(url, params={"attrs": "unknown"}), 404, "ResourceNotFound")
    problem(client.get(url, params={"pick": "speed", "omit": "speed"}), 400, "BadRequestData")
    problem(client.get(url, params={"pick": "speed", "attrs": "fuel"}), 400, "BadRequestData")
    query = {"type": "Vehicle", "options": "temporalValues"}
    tank2 = client.get("/temporal/entities", params={**query, "datasetId": "urn:ngsi-ld:Dataset:tank2"}).json()
    assert tank2[0]["fuel"] == {"type": "Property", "datasetId": "urn:ngsi-ld:Dataset:tank2",
                                "values": [[40, "2024-03-01T10:25:00Z"]]}
    assert "speed" not in tank2[0]
    default = client.get("/temporal/entities", params={**query, "datasetId": "@none", "attrs": "fuel"}).json()
    assert [v[0] for v in default[0]["fuel"]["values"]] == [60, 55]
    none = client.get("/temporal/entities", params={**query, "attrs": "speed",
                                                    "datasetId": "urn:ngsi-ld:Dataset:tank2"})
    assert none.status_code == 200 and none.json() == []


def test_pages_are_time_ranges_and_lastn_pages_from_the_newest(client: httpx.Client, server) -> None:
    size = server.settings.temporal_page_size
    speed = [{"type": "Property", "value": i, "observedAt": f"2024-03-01T10:{i:02d}:00Z"} for i in range(size)]
    fuel = [{"type": "Property", "value": i, "observedAt": f"2024-03-02T10:{i:02d}:00Z"} for i in range(size)]
    create(client, car(speed=speed, fuel=fuel))
    r = client.get(f"/temporal/entities/{CAR}", params={"timerel": "after", "timeAt": "2024-01-01T00:00:00Z"})
    assert r.status_code == 206
    assert r.headers["content-range"] == f"date-time 2024-01-01T00:00:00Z-2024-03-01T10:{size - 1:02d}:00Z/*"
    assert len(r.json()["speed"]) == size and r.json()["fuel"] == []  # fuel lies after the page's range
    r = client.get(f"/temporal/entities/{CAR}", params={"lastN": str(size), "timerel": "before",
                                                         "timeAt": "2025-01-01T00:00:00Z"})
    assert r.status_code == 206
    assert r.headers["content-range"] == f"date-time 2025-01-01T00:00:00Z-2024-03-02T10:00:00Z/{size}"
    assert r.json()["speed"] == [] and len(r.json()["fuel"]) == size
    whole = client.get(f"/temporal/entities/{CAR}", params={"attrs": "speed"})
    assert whole.status_code == 200 and len(whole.json()["speed"]) == size


def test_attribute_and_instance_deletes(client: httpx.Client) -> None:
    create(client, car(fuel=FUEL))
    url = f"/temporal/entities/{CAR}/attrs/fuel"
    assert client.delete(url, params={"deleteAll": "false"}).status_code == 204  # the default instances only
    left = client.get(f"/temporal/entities/{CAR}").json()["fuel"]
    assert [i["value"] for i in left] == [40]
    problem(client.delete(url, params={"deleteAll": "false"}), 404, "ResourceNotFound")
    assert client.delete(url, params={"deleteAll": "true"}).status_code == 204
    assert "fuel" not in client.get(f"/temporal/entities/{CAR}").json()


def history_caught_up(client: httpx.Client, speed: int) -> bool:
    """The relay records changes in order: once this speed is in the history, every earlier change is too."""
    r = client.get(f"/temporal/entities/{CAR}", params={"options": "temporalValues", "attrs": "speed"})
    return r.status_code == 200 and speed in [v[0] for v in r.json()["speed"]["values"]]


def test_deleting_the_temporal_evolution_keeps_the_entity(client: httpx.Client) -> None:
    # 5.6.16 removes the temporal evolution; the entity (made by the temporal create) is removed by 5.6.6 only.
    create(client, car(speed=SPEEDS))
    assert client.patch(f"/entities/{CAR}/attrs/speed", json={"type": "Property", "value": 95}).status_code == 204
    assert wait_for(lambda: history_caught_up(client, 95))
    assert client.delete(f"/temporal/entities/{CAR}").status_code == 204
    problem(client.get(f"/temporal/entities/{CAR}"), 404, "ResourceNotFound")
    problem(client.get(f"/temporal/entities/{CAR}", params={"options": "aggregatedValues", "aggrMethods": "sum"}),
            404, "ResourceNotFound")
    assert client.get(f"/entities/{CAR}").json()["speed"]["value"] == 95
    assert client.get("/temporal/entities", params={"type": "Vehicle"}).json() == []
    # The entity is still known, so deleting its (now empty) temporal evolution again is not an error.
    assert client.delete(f"/temporal/entities/{CAR}").status_code == 204
    # Later changes start a new history.
    assert client.patch(f"/entities/{CAR}/attrs/speed", json={"type": "Property", "value": 30}).status_code == 204
    assert wait_for(lambda: history_caught_up(client, 30))
    values = client.get(f"/temporal/entities/{CAR}", params={"options": "temporalValues"}).json()["speed"]["values"]
    assert [v[0] for v in values] == [30]


def test_deleting_the_temporal_evolution_of_an_unknown_entity(client: httpx.Client) -> None:
    problem(client.delete("/temporal/entities/urn:ngsi-ld:Vehicle:nowhere"), 404, "ResourceNotFound")
    problem(client.delete("/temporal/entities/not-a-uri"), 400, "BadRequestData")
    # Deleting the entity keeps its history (with the deletion in it); deleting that history leaves nothing known.
    create(client, car(speed=SPEEDS[:1]))
    assert client.patch(f"/entities/{CAR}/attrs/speed", json={"type": "Property", "value": 60}).status_code == 204
    assert wait_for(lambda: history_caught_up(client, 60))
    assert client.delete(f"/entities/{CAR}").status_code == 204
    deleted = wait_for(lambda: client.get(f"/temporal/entities/{CAR}", params={"timeproperty": "deletedAt"}).json()
                       .get("speed"))
    assert deleted and deleted[0]["value"] == "urn:ngsi-ld:null"
    assert client.delete(f"/temporal/entities/{CAR}").status_code == 204
    problem(client.delete(f"/temporal/entities/{CAR}"), 404, "ResourceNotFound")
    problem(client.get(f"/temporal/entities/{CAR}"), 404, "ResourceNotFound")


def test_malformed_instance_paths_are_rejected_not_missed(client: httpx.Client) -> None:
    create(client, car(speed=SPEEDS))
    instance = client.get(f"/temporal/entities/{CAR}").json()["speed"][0]["instanceId"]
    fragment = {"speed": {"type": "Property", "value": 1, "observedAt": "2024-03-01T10:00:00Z"}}
    problem(client.delete(f"/temporal/entities//attrs/speed/{instance}"), 400, "BadRequestData")
    problem(client.delete(f"/temporal/entities/{CAR}/attrs/speed/notAUri"), 400, "BadRequestData")
    problem(client.delete(f"/temporal/entities/{CAR}/attrs//{instance}"), 400, "BadRequestData")
    problem(client.delete(f"/temporal/entities/{CAR}/attrs/bad(name/{instance}"), 400, "BadRequestData")
    problem(client.patch(f"/temporal/entities//attrs/speed/{instance}", json=fragment), 400, "BadRequestData")
    problem(client.patch(f"/temporal/entities/{CAR}/attrs//{instance}", json=fragment), 405, "MethodNotAllowed")
    problem(client.post("/temporal/entities//attrs", json={"speed": SPEEDS[:1]}), 400, "BadRequestData")
    problem(client.delete("/temporal/entities//attrs/speed"), 400, "BadRequestData")
    r = client.patch(f"/temporal/entities/{CAR}/attrs/speed/{instance}", json=fragment)
    assert r.status_code == 204
    assert client.get(f"/temporal/entities/{CAR}").json()["speed"][0]["value"] == 1


def test_query_needs_a_selector_and_orders_by_the_current_state(client: httpx.Client) -> None:
    for n, speed in ((1, 30), (2, 10), (3, 20)):
        create(client, car(f"urn:ngsi-ld:Vehicle:TQ{n}", speed=[{"type": "Property", "value": speed,
                                                                  "observedAt": "2024-03-01T10:00:00Z"}]))
    problem(client.get("/temporal/entities", params={"id": "urn:ngsi-ld:Vehicle:TQ1"}), 400, "BadRequestData")
    everything = client.get("/temporal/entities", params={"local": "true"}).json()
    assert len(everything) == 3
    ordered = client.get("/temporal/entities", params={"type": "Vehicle", "orderBy": "speed;desc"}).json()
    assert [e["id"][-3:] for e in ordered] == ["TQ1", "TQ3", "TQ2"]


def test_aggregations_over_the_whole_range_and_of_text_values(client: httpx.Client) -> None:
    create(client, car(speed=SPEEDS, state=[
        {"type": "Property", "value": s, "observedAt": f"2024-03-01T10:{m:02d}:00Z"}
        for s, m in (("moving", 0), ("parked", 10), ("moving", 20))]))
    agg = client.get(f"/temporal/entities/{CAR}", params={"options": "aggregatedValues",
                                                          "aggrMethods": "totalCount,distinctCount,avg"}).json()
    assert agg["speed"]["avg"] == [[70.0, "2024-03-01T10:00:00Z", "2024-03-01T10:20:00Z"]]
    assert agg["state"]["totalCount"][0][0] == 3 and agg["state"]["distinctCount"][0][0] == 2
    post = client.post("/temporal/entityOperations/query", params={"options": "aggregatedValues",
                                                                    "aggrMethods": "max",
                                                                    "aggrPeriodDuration": "PT10M"},
                       json={"type": "Query", "entities": [{"type": "Vehicle"}], "attrs": ["speed"],
                             "temporalQ": {"timerel": "between", "timeAt": "2024-03-01T10:00:00Z",
                                           "endTimeAt": "2024-03-01T10:30:00Z"}})
    assert post.status_code == 200, post.text
    assert [m[0] for m in post.json()[0]["speed"]["max"]] == [50, 70, 90]


def aggregated(client: httpx.Client, entity_id: str = CAR, **params: str) -> httpx.Response:
    return client.get(f"/temporal/entities/{entity_id}", params={"options": "aggregatedValues", **params})


def test_aggregated_retrieve_periods_start_at_each_attributes_first_instance(client: httpx.Client) -> None:
    # speed starts at 10:00, fuel at 10:05: without a window start each attribute's periods begin at its own
    # first instance.
    create(client, car(speed=SPEEDS, fuel=FUEL))
    agg = aggregated(client, aggrMethods="sum,totalCount", aggrPeriodDuration="PT10M").json()
    assert agg["speed"]["sum"] == [[50, "2024-03-01T10:00:00Z", "2024-03-01T10:10:00Z"],
                                   [70, "2024-03-01T10:10:00Z", "2024-03-01T10:20:00Z"],
                                   [90, "2024-03-01T10:20:00Z", "2024-03-01T10:30:00Z"]]
    assert agg["fuel"]["totalCount"] == [[1, "2024-03-01T10:05:00Z", "2024-03-01T10:15:00Z"],
                                         [1, "2024-03-01T10:15:00Z", "2024-03-01T10:25:00Z"],
                                         [1, "2024-03-01T10:25:00Z", "2024-03-01T10:35:00Z"]]
    # With a window start, both use it; an attribute without instances in the window is left out.
    window = {"timerel": "between", "timeAt": "2024-03-01T10:12:00Z", "endTimeAt": "2024-03-01T10:19:00Z"}
    agg = aggregated(client, aggrMethods="max", aggrPeriodDuration="PT5M", **window).json()
    assert agg["fuel"]["max"] == [[55, "2024-03-01T10:12:00Z", "2024-03-01T10:17:00Z"]]
    assert "speed" not in agg
    # The whole window as one period ends at the window's end.
    whole = aggregated(client, aggrMethods="avg", timerel="after", timeAt="2024-03-01T10:05:00Z").json()
    assert whole["speed"]["avg"] == [[80.0, "2024-03-01T10:05:00Z", "2024-03-01T10:20:00Z"]]


def test_aggregated_retrieve_of_attributes_datasets_and_missing_history(client: httpx.Client) -> None:
    create(client, car(speed=SPEEDS, fuel=FUEL))
    only = aggregated(client, attrs="fuel,colour", aggrMethods="min").json()
    assert set(only) == {"id", "type", "fuel"} and only["fuel"]["min"][0][0] == 40
    tank = aggregated(client, attrs="fuel", aggrMethods="totalCount,sum",
                      datasetId="urn:ngsi-ld:Dataset:tank2").json()
    assert tank["fuel"]["totalCount"][0][0] == 1 and tank["fuel"]["sum"][0][0] == 40
    default = aggregated(client, attrs="fuel", aggrMethods="sum", datasetId="@none").json()
    assert default["fuel"]["sum"][0][0] == 115
    problem(aggregated(client, attrs="colour", aggrMethods="sum"), 404, "ResourceNotFound")
    problem(aggregated(client, "urn:ngsi-ld:Vehicle:nowhere", aggrMethods="sum"), 404, "ResourceNotFound")
    # An entity created through the core API has history only once the relay has recorded its change.
    assert client.post("/entities", json=car("urn:ngsi-ld:Vehicle:TA2", speed={"type": "Property", "value": 5})
                       ).status_code == 201
    counted = wait_for(lambda: aggregated(client, "urn:ngsi-ld:Vehicle:TA2", aggrMethods="totalCount",
                                          timeproperty="createdAt").json().get("speed"))
    assert counted["totalCount"][0][0] == 1


def test_malformed_temporal_queries_are_problems(client: httpx.Client) -> None:
    create(client, car(speed=SPEEDS))
    for body in ({"type": "Query", "entities": [{"type": "Vehicle"}], "attrs": [1, 2]},
                 {"type": "Query", "entities": "Vehicle"},
                 {"type": "Query", "entities": [{"type": "Vehicle"}], "temporalQ": ["after"]},
                 {"type": "Query", "entities": [{"type": "Vehicle"}], "temporalQ": {"timerel": "after"}},
                 {"type": "Query", "entities": [{"type": "Vehicle"}], "temporalQ": {"lastN": "many"}}):
        problem(client.post("/temporal/entityOperations/query", json=body), 400, "BadRequestData")
    problem(client.get("/temporal/entities", params={"type": "Vehicle", "orderBy": "speed;sideways"}),
            400, "BadRequestData")
    problem(client.get(f"/temporal/entities/{CAR}", params={"datasetId": "not a uri"}), 400, "BadRequestData")


def test_scope_changes_are_history(client: httpx.Client) -> None:
    create(client, car(scope=["/Madrid/Gardens", "/CompanyA"], speed=SPEEDS[:1]))
    assert client.get(f"/entities/{CAR}").json()["scope"] == ["/Madrid/Gardens", "/CompanyA"]
    assert client.delete(f"/entities/{CAR}/attrs/scope").status_code == 204
    removed = wait_for(lambda: client.get(f"/temporal/entities/{CAR}", params={"timeproperty": "deletedAt"}).json()
                       .get("scope"))
    assert removed[0]["value"] == [] and "deletedAt" in removed[0]
    simple = client.get(f"/temporal/entities/{CAR}", params={"timeproperty": "deletedAt",
                                                             "options": "temporalValues"}).json()
    assert simple["scope"]["values"][0][0] == []
