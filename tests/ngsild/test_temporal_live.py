"""The temporal API over real HTTP, on both engines: history recorded from changes, queried and aggregated."""

from __future__ import annotations

import time

import httpx
from tests.helpers import problem

EID = "urn:ngsi-ld:AirQualityObserved:T1"


def station(pm25: float, at: str) -> dict:
    return {"id": EID, "type": "AirQualityObserved",
            "pm25": {"type": "Property", "value": pm25, "observedAt": at, "unitCode": "GQ"}}


def history(client: httpx.Client, **params: str) -> httpx.Response:
    deadline = time.monotonic() + 10
    while True:  # the history follows the change events: wait until the last write is in
        r = client.get(f"/temporal/entities/{EID}", params=params)
        if r.status_code in (200, 206) or time.monotonic() > deadline:
            return r
        time.sleep(0.1)


def record(client: httpx.Client, readings: list[tuple[float, str]]) -> None:
    client.post("/entities", json=station(*readings[0]))
    for value, at in readings[1:]:
        r = client.patch(f"/entities/{EID}/attrs/pm25", json={"value": value, "observedAt": at})
        assert r.status_code == 204
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        got = client.get(f"/temporal/entities/{EID}", params={"options": "aggregatedValues",
                                                              "aggrMethods": "totalCount"})
        counts = got.json().get("pm25", {}).get("totalCount", []) if got.status_code == 200 else []
        if counts and counts[0][0] == len(readings):
            return
        time.sleep(0.1)
    raise AssertionError("the history did not catch up")


READINGS = [(10.0, "2025-06-16T08:00:00Z"), (20.0, "2025-06-16T08:30:00Z"), (30.0, "2025-06-16T09:10:00Z"),
            (50.0, "2025-06-16T09:40:00Z")]


def test_history_of_changes_in_every_representation(client: httpx.Client) -> None:
    record(client, READINGS)
    normalized = history(client).json()
    assert [i["value"] for i in normalized["pm25"]] == [10.0, 20.0, 30.0, 50.0]
    assert all(i["instanceId"].startswith("urn:ngsi-ld:") for i in normalized["pm25"])
    simple = history(client, options="temporalValues").json()
    assert simple["pm25"]["values"][1][0] == 20.0 and simple["pm25"]["values"][1][1].startswith("2025-06-16T08:30")
    window = history(client, timerel="between", timeAt="2025-06-16T08:15:00Z", endTimeAt="2025-06-16T09:30:00Z",
                     options="temporalValues").json()
    assert [v[0] for v in window["pm25"]["values"]] == [20.0, 30.0]
    assert [v[0] for v in history(client, timerel="after", timeAt="2025-06-16T09:00:00Z",
                                  options="temporalValues").json()["pm25"]["values"]] == [30.0, 50.0]
    last = history(client, lastN="1", options="temporalValues").json()
    assert [v[0] for v in last["pm25"]["values"]] == [50.0]


def test_aggregated_values_per_period(client: httpx.Client) -> None:
    record(client, READINGS)
    agg = history(client, options="aggregatedValues", aggrMethods="avg,max,totalCount,sum,min,stddev,sumsq",
                  aggrPeriodDuration="PT1H", timerel="between", timeAt="2025-06-16T08:00:00Z",
                  endTimeAt="2025-06-16T10:00:00Z").json()["pm25"]
    assert [a[0] for a in agg["avg"]] == [15.0, 40.0]
    assert [a[0] for a in agg["max"]] == [20.0, 50.0]
    assert [a[0] for a in agg["totalCount"]] == [2, 2]
    assert [a[0] for a in agg["sumsq"]] == [500.0, 3400.0]
    assert agg["avg"][0][1].startswith("2025-06-16T08:00") and agg["avg"][0][2].startswith("2025-06-16T09:00")
    assert agg["stddev"][0][0] == 5.0


def test_paging_with_206_and_content_range(client: httpx.Client, server) -> None:
    readings = [(float(i), f"2025-06-16T{8 + i // 60:02d}:{i % 60:02d}:00Z") for i in range(40)]
    record(client, readings)
    r = history(client, options="temporalValues")
    assert r.status_code == 206
    assert len(r.json()["pm25"]["values"]) == server.settings.temporal_page_size
    assert r.headers["content-range"].startswith("date-time 2025-06-16T08:00")


def test_deletions_are_visible_and_history_can_be_deleted(client: httpx.Client) -> None:
    record(client, READINGS[:2])
    client.delete(f"/entities/{EID}/attrs/pm25")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        items = history(client).json()["pm25"]
        if len(items) == 3:
            break
        time.sleep(0.1)
    assert items[-1]["value"] == "urn:ngsi-ld:null" and "deletedAt" in items[-1]
    assert client.delete(f"/temporal/entities/{EID}").status_code == 204
    problem(client.get(f"/temporal/entities/{EID}"), 404, "ResourceNotFound")


def test_temporal_writes_and_queries(client: httpx.Client) -> None:
    body = {"id": "urn:ngsi-ld:Vehicle:T9", "type": "Vehicle", "speed": [
        {"type": "Property", "value": 10, "observedAt": "2025-01-01T00:00:00Z"},
        {"type": "Property", "value": 20, "observedAt": "2025-01-01T00:01:00Z"}]}
    r = client.post("/temporal/entities", json=body)
    assert r.status_code == 201, r.text
    assert client.post("/temporal/entities/urn:ngsi-ld:Vehicle:T9/attrs", json={"speed": [
        {"type": "Property", "value": 30, "observedAt": "2025-01-01T00:02:00Z"}]}).status_code == 204
    got = client.get("/temporal/entities", params={"type": "Vehicle", "options": "temporalValues"}).json()
    assert [v[0] for v in got[0]["speed"]["values"]] == [10, 20, 30]
    instance = client.get("/temporal/entities/urn:ngsi-ld:Vehicle:T9").json()["speed"][0]["instanceId"]
    r = client.delete(f"/temporal/entities/urn:ngsi-ld:Vehicle:T9/attrs/speed/{instance}")
    assert r.status_code == 204
    assert len(client.get("/temporal/entities/urn:ngsi-ld:Vehicle:T9").json()["speed"]) == 2
    post = client.post("/temporal/entityOperations/query", json={
        "type": "Query", "entities": [{"type": "Vehicle"}],
        "temporalQ": {"timerel": "before", "timeAt": "2025-01-01T00:01:30Z"}})
    # Normalized temporal attributes are always arrays of instances, even when one instance is left.
    assert post.status_code == 200 and [i["value"] for i in post.json()[0]["speed"]] == [20]


def test_bad_temporal_requests(client: httpx.Client) -> None:
    record(client, READINGS[:1])
    problem(client.get(f"/temporal/entities/{EID}", params={"timerel": "sometime", "timeAt": "2025-01-01T00:00:00Z"}),
            400, "BadRequestData")
    problem(client.get(f"/temporal/entities/{EID}", params={"timerel": "before"}), 400, "BadRequestData")
    problem(client.get(f"/temporal/entities/{EID}", params={"options": "aggregatedValues", "aggrMethods": "median"}),
            400, "BadRequestData")
    problem(client.get(f"/temporal/entities/{EID}", params={"options": "aggregatedValues", "aggrMethods": "avg",
                                                             "aggrPeriodDuration": "1 hour"}), 400, "BadRequestData")
    problem(client.get("/temporal/entities"), 400, "BadRequestData")
    problem(client.get("/temporal/entities", params={"type": "X", "bogus": "1"}), 400, "InvalidRequest")
    problem(client.get(f"/temporal/entities/{EID}", headers={"Accept": "application/geo+json"}), 406, "NotAcceptable")
