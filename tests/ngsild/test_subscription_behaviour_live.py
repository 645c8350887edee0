"""What a subscriber notices: triggers, deletions, formats, contexts, joins and pick/omit in notifications, and
the subscription resource itself (defaults, renaming by @context, PATCH), over real HTTP on both engines."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.helpers import problem
from tests.ngsild.test_subscriptions_live import Receiver, subscription, vehicle

NULL = "urn:ngsi-ld:null"
MERGE = {"Content-Type": "application/merge-patch+json"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def quiet(receiver: Receiver, count: int, wait: float = 0.6) -> None:
    """Nothing beyond `count` notifications arrives."""
    time.sleep(wait)
    assert len(receiver.received) == count, [b for _, b in receiver.received]


def user_context(server: Any, terms: dict[str, str]) -> str:
    r = httpx.post(server.url + "/ngsi-ld/v1/jsonldContexts", json={"@context": terms},
                   headers={"Content-Type": "application/ld+json"})
    assert r.status_code == 201, r.text
    return str(r.headers["location"])


def link(url: str) -> dict[str, str]:
    return {"Link": f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'}


def test_default_trigger_is_attribute_created_or_updated(client: httpx.Client, receiver: Receiver) -> None:
    sub = subscription(receiver.url)
    del sub["watchedAttributes"]
    assert client.post("/subscriptions", json=sub).status_code == 201
    shown = client.get(f"/subscriptions/{sub['id']}").json()
    assert shown["notificationTrigger"] == ["attributeCreated", "attributeUpdated"]
    client.post("/entities", json=vehicle(10))  # its attributes are created
    client.post("/entities/urn:ngsi-ld:Vehicle:V1/attrs", json={"fuel": {"type": "Property", "value": 3}})
    client.patch("/entities/urn:ngsi-ld:Vehicle:V1/attrs/speed", json={"value": 11})
    assert len(receiver.wait(3)) == 3
    client.delete("/entities/urn:ngsi-ld:Vehicle:V1/attrs/fuel")  # a deletion is not asked for
    client.delete("/entities/urn:ngsi-ld:Vehicle:V1")
    quiet(receiver, 3)


def test_entity_deletion_shows_only_members_or_watched_attributes(client: httpx.Client, receiver: Receiver) -> None:
    bare = subscription(receiver.url, notificationTrigger=["entityDeleted"])
    del bare["watchedAttributes"]
    watched = subscription(receiver.url, notificationTrigger=["attributeDeleted"])
    watched["notification"]["format"] = "normalized"
    client.post("/subscriptions", json=bare)
    client.post("/subscriptions", json=watched)
    client.post("/entities", json=vehicle(5))
    client.delete("/entities/urn:ngsi-ld:Vehicle:V1")
    bodies = {b["subscriptionId"]: b["data"][0] for b in receiver.wait(2)}
    assert set(bodies[bare["id"]]) == {"id", "type", "deletedAt"}
    assert {k: v for k, v in bodies[watched["id"]].items() if k != "deletedAt"} == {
        "id": "urn:ngsi-ld:Vehicle:V1", "type": "Vehicle", "speed": {"type": "Property", "value": NULL}}


def test_deleting_one_dataset_instance_is_an_attribute_deletion(client: httpx.Client, receiver: Receiver) -> None:
    normalized = subscription(receiver.url, notificationTrigger=["attributeDeleted"])
    normalized["notification"]["format"] = "normalized"
    simplified = subscription(receiver.url, notificationTrigger=["attributeDeleted"])
    client.post("/subscriptions", json=normalized)
    client.post("/subscriptions", json=simplified)
    entity = {**vehicle(1), "speed": [{"type": "Property", "value": 1},
                                      {"type": "Property", "value": 2, "datasetId": "urn:ngsi-ld:Dataset:gps"},
                                      {"type": "Property", "value": 3, "datasetId": "urn:ngsi-ld:Dataset:radar"}]}
    client.post("/entities", json=entity)
    r = client.delete("/entities/urn:ngsi-ld:Vehicle:V1/attrs/speed", params={"datasetId": "urn:ngsi-ld:Dataset:gps"})
    assert r.status_code == 204
    bodies = {b["subscriptionId"]: b["data"][0] for b in receiver.wait(2)}
    assert bodies[normalized["id"]]["speed"] == [
        {"type": "Property", "value": 1}, {"type": "Property", "value": 3, "datasetId": "urn:ngsi-ld:Dataset:radar"},
        {"type": "Property", "value": NULL, "datasetId": "urn:ngsi-ld:Dataset:gps"}]
    assert bodies[simplified["id"]]["speed"] == {"dataset": {
        "@none": 1, "urn:ngsi-ld:Dataset:radar": 3, "urn:ngsi-ld:Dataset:gps": NULL}}
    # Deleting every instance at once announces the attribute once, as the NGSI-LD Null.
    client.delete("/entities/urn:ngsi-ld:Vehicle:V1/attrs/speed", params={"deleteAll": "true"})
    latest = {b["subscriptionId"]: b["data"][0] for b in receiver.wait(4)[2:]}
    assert latest[normalized["id"]]["speed"] == {"type": "Property", "value": NULL}


def test_attribute_deletion_with_sys_attrs_carries_deleted_at(client: httpx.Client, receiver: Receiver) -> None:
    sub = subscription(receiver.url, notificationTrigger=["attributeDeleted"])
    sub["notification"].update(format="normalized", sysAttrs=True)
    client.post("/subscriptions", json=sub)
    client.post("/entities", json=vehicle(1))
    client.delete("/entities/urn:ngsi-ld:Vehicle:V1/attrs/speed")
    speed = receiver.wait(1)[0]["data"][0]["speed"]
    assert speed["value"] == NULL and {"createdAt", "modifiedAt", "deletedAt"} <= set(speed)


def test_type_expressions_url_encoded_q_and_dataset_filter(client: httpx.Client, receiver: Receiver) -> None:
    sub = subscription(receiver.url, entities=[{"type": "(Vehicle|Bus)"}], q="colour==%22dark%20red%22",
                       datasetId=["urn:ngsi-ld:Dataset:gps"])
    assert client.post("/subscriptions", json=sub).status_code == 201
    client.post("/entities", json=vehicle(1, colour={"type": "Property", "value": "blue"}))  # q fails
    bus = vehicle(2, id="urn:ngsi-ld:Bus:B1", type="Bus", colour={"type": "Property", "value": "dark red"})
    bus["speed"] = [{"type": "Property", "value": 2}, {"type": "Property", "value": 9,
                                                        "datasetId": "urn:ngsi-ld:Dataset:gps"}]
    client.post("/entities", json=bus)
    body = receiver.wait(1)[0]
    quiet(receiver, 1)
    assert body["data"][0]["id"] == "urn:ngsi-ld:Bus:B1"
    assert body["data"][0]["speed"] == 9  # only the instance of the subscribed dataset
    problem(client.post("/subscriptions", json={**sub, "entities": [{"type": "(Vehicle|"}]}), 400, "BadRequestData")
    problem(client.post("/subscriptions", json={**sub, "datasetId": ["not a uri"]}), 400, "BadRequestData")


def test_key_values_with_sys_attrs_shows_timestamps(client: httpx.Client, receiver: Receiver) -> None:
    sub = subscription(receiver.url)
    sub["notification"]["sysAttrs"] = True
    client.post("/subscriptions", json=sub)
    client.post("/entities", json=vehicle(1))
    entity = receiver.wait(1)[0]["data"][0]
    assert entity["speed"] == 1 and "createdAt" in entity and "modifiedAt" in entity


def test_contexts_match_render_and_name_the_link(client: httpx.Client, receiver: Receiver, server: Any) -> None:
    own = user_context(server, {"Car": "https://example.org/Car", "velocity": "https://example.org/velocity"})
    sub = {"id": "urn:ngsi-ld:Subscription:ctx", "type": "Subscription", "entities": [{"type": "Car"}],
           "watchedAttributes": ["velocity"],
           "notification": {"endpoint": {"uri": receiver.url}, "attributes": ["velocity"]}}
    assert client.post("/subscriptions", json=sub, headers=link(own)).status_code == 201
    # A reader with another @context sees the names as full IRIs; with the subscriber's own, as written.
    plain = client.get("/subscriptions/urn:ngsi-ld:Subscription:ctx").json()
    assert plain["entities"] == [{"type": "https://example.org/Car"}]
    assert plain["watchedAttributes"] == ["https://example.org/velocity"]
    assert client.get("/subscriptions/urn:ngsi-ld:Subscription:ctx", headers=link(own)).json()["entities"] == [
        {"type": "Car"}]
    car = {"id": "urn:ngsi-ld:Car:C1", "type": "Car", "velocity": {"type": "Property", "value": 3}}
    client.post("/entities", json=car, headers=link(own))
    headers, body = receiver.received[0] if receiver.wait(1) else ({}, {})
    assert body["data"][0] == {"id": "urn:ngsi-ld:Car:C1", "type": "Car", "velocity": {"type": "Property",
                                                                                        "value": 3}}
    assert own in headers["link"]  # the subscriber's context, not the core one
    # jsonldContext changes how notifications name things, not what the subscription matches.
    r = client.patch("/subscriptions/urn:ngsi-ld:Subscription:ctx", headers=MERGE | link(own),
                     json={"jsonldContext": "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"})
    assert r.status_code == 204
    time.sleep(2.1)  # the subscription cache
    client.patch("/entities/urn:ngsi-ld:Car:C1/attrs/velocity", json={"value": 4}, headers=link(own))
    body = receiver.wait(2)[1]
    assert body["data"][0]["type"] == "https://example.org/Car"
    assert body["data"][0]["https://example.org/velocity"]["value"] == 4


def test_notifications_join_linked_entities(client: httpx.Client, receiver: Receiver) -> None:
    city = {"id": "urn:ngsi-ld:City:Paris", "type": "City", "name": {"type": "Property", "value": "Paris"}}
    client.post("/entities", json=city)
    inline = subscription(receiver.url, entities=[{"type": "Building"}])
    del inline["watchedAttributes"]
    inline["notification"].update(format="normalized", join="inline", joinLevel=1)
    flat = subscription(receiver.url, entities=[{"type": "Building"}])
    del flat["watchedAttributes"]
    flat["notification"].update(format="keyValues", join="flat", attributes=["locatedAt"])
    client.post("/subscriptions", json=inline)
    client.post("/subscriptions", json=flat)
    client.post("/entities", json={"id": "urn:ngsi-ld:Building:B1", "type": "Building",
                                   "height": {"type": "Property", "value": 30},
                                   "locatedAt": {"type": "Relationship", "object": "urn:ngsi-ld:City:Paris"}})
    bodies = {b["subscriptionId"]: b["data"] for b in receiver.wait(2)}
    assert bodies[inline["id"]][0]["locatedAt"]["entity"] == {
        "id": "urn:ngsi-ld:City:Paris", "type": "City", "name": {"type": "Property", "value": "Paris"}}
    assert bodies[flat["id"]] == [
        {"id": "urn:ngsi-ld:Building:B1", "type": "Building", "locatedAt": "urn:ngsi-ld:City:Paris"},
        {"id": "urn:ngsi-ld:City:Paris", "type": "City", "name": "Paris"}]


def test_notifications_pick_and_omit_members(client: httpx.Client, receiver: Receiver) -> None:
    pick = subscription(receiver.url)
    pick["notification"]["pick"] = ["id", "speed"]
    omit = subscription(receiver.url)
    omit["notification"]["omit"] = ["type", "colour"]
    client.post("/subscriptions", json=pick)
    client.post("/subscriptions", json=omit)
    client.post("/entities", json=vehicle(7))
    bodies = {b["subscriptionId"]: b["data"][0] for b in receiver.wait(2)}
    assert bodies[pick["id"]] == {"id": "urn:ngsi-ld:Vehicle:V1", "speed": 7}
    assert bodies[omit["id"]] == {"id": "urn:ngsi-ld:Vehicle:V1", "speed": 7}
    both = subscription(receiver.url)
    both["notification"].update(pick=["speed"], omit=["speed"])
    problem(client.post("/subscriptions", json=both), 400, "BadRequestData")
    with_attrs = subscription(receiver.url)
    with_attrs["notification"].update(pick=["speed"], attributes=["speed"])
    problem(client.post("/subscriptions", json=with_attrs), 400, "BadRequestData")
    problem(client.post("/subscriptions", json={**pick, "id": "urn:x:1", "notification": {
        **pick["notification"], "join": "sideways"}}), 400, "BadRequestData")


def test_patch_replaces_members_removes_with_null_and_never_half_applies(client: httpx.Client,
                                                                           receiver: Receiver) -> None:
    sub = subscription(receiver.url, q="speed>1", throttling=5)
    client.post("/subscriptions", json=sub)
    url = f"/subscriptions/{sub['id']}"
    # A bad fragment changes nothing, even the members of it that were fine.
    problem(client.patch(url, json={"q": "speed>2", "notification": {"format": "keyValues"}}, headers=MERGE), 400,
            "BadRequestData")
    problem(client.patch(url, json={"timeInterval": 3}, headers=MERGE), 400, "BadRequestData")
    problem(client.patch(url, json={"notification": None}, headers=MERGE), 400, "BadRequestData")
    assert client.get(url).json()["q"] == "speed>1"
    assert client.patch(url, json={"q": None, "throttling": None, "expiresAt": "2099-01-01T00:00:00Z"},
                        headers=MERGE).status_code == 204
    shown = client.get(url).json()
    assert "q" not in shown and "throttling" not in shown and shown["expiresAt"] == "2099-01-01T00:00:00Z"


def test_subscription_list_pages_with_canonical_links(client: httpx.Client, receiver: Receiver) -> None:
    for _ in range(3):
        client.post("/subscriptions", json=subscription(receiver.url))
    r = client.get("/subscriptions/", params={"limit": 1, "offset": 1},
                   headers={"Accept": "application/ld+json"})
    assert r.headers["link"] == ('</ngsi-ld/v1/subscriptions?limit=1&offset=0>;rel="prev";type="application/ld+json", '
                                 '</ngsi-ld/v1/subscriptions?limit=1&offset=2>;rel="next";type="application/ld+json"')


def test_an_expired_subscription_says_so_and_sends_nothing(client: httpx.Client, receiver: Receiver) -> None:
    soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2))
    sub = subscription(receiver.url, expiresAt=soon)
    assert client.post("/subscriptions", json=sub).status_code == 201
    assert client.get(f"/subscriptions/{sub['id']}").json()["status"] == "active"
    time.sleep(3)
    assert client.get(f"/subscriptions/{sub['id']}").json()["status"] == "expired"
    client.post("/entities", json=vehicle(1))
    quiet(receiver, 0)
    problem(client.post("/subscriptions", json={**sub, "id": "urn:x:past", "expiresAt": "2001-01-01T00:00:00Z"}),
            400, "BadRequestData")


def test_many_subscriptions_on_one_change_each_notify_once_and_count_it(client: httpx.Client,
                                                                        receiver: Receiver) -> None:
    subs = [subscription(receiver.url) for _ in range(6)]
    for sub in subs:
        assert client.post("/subscriptions", json=sub).status_code == 201
    client.post("/entities", json=vehicle(3))
    bodies = receiver.wait(6)
    quiet(receiver, 6)
    assert sorted(b["subscriptionId"] for b in bodies) == sorted(s["id"] for s in subs)
    assert len({b["id"] for b in bodies}) == 6  # every notification has its own id
    for sub in subs:
        assert client.get(f"/subscriptions/{sub['id']}").json()["notification"]["timesSent"] == 1
