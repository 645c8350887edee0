"""Context-source registrations over real HTTP, on both engines."""

from __future__ import annotations

import httpx
from tests.helpers import problem

REG = {
    "id": "urn:ngsi-ld:ContextSourceRegistration:traffic-bureau",
    "type": "ContextSourceRegistration",
    "information": [{"entities": [{"type": "TrafficFlowObserved"}], "propertyNames": ["intensity", "occupancy"]}],
    "endpoint": "http://traffic.example.org/ngsi-ld",
    "mode": "inclusive",
}


def test_registration_lifecycle(client: httpx.Client) -> None:
    r = client.post("/csourceRegistrations", json=REG)
    assert r.status_code == 201, r.text
    assert r.headers["location"].endswith(REG["id"])
    problem(client.post("/csourceRegistrations", json=REG), 409, "AlreadyExists")
    got = client.get(f"/csourceRegistrations/{REG['id']}").json()
    assert got["information"] == REG["information"] and got["endpoint"] == REG["endpoint"]
    assert [x["id"] for x in client.get("/csourceRegistrations", params={"type": "TrafficFlowObserved"}).json()] == [
        REG["id"]]
    assert client.get("/csourceRegistrations", params={"type": "Streetlight"}).json() == []
    assert client.patch(f"/csourceRegistrations/{REG['id']}", json={"endpoint": "http://b.example.org"}).status_code \
        == 204
    assert client.get(f"/csourceRegistrations/{REG['id']}").json()["endpoint"] == "http://b.example.org"
    assert client.delete(f"/csourceRegistrations/{REG['id']}").status_code == 204
    problem(client.get(f"/csourceRegistrations/{REG['id']}"), 404, "ResourceNotFound")


def test_invalid_registrations_are_refused(client: httpx.Client) -> None:
    problem(client.post("/csourceRegistrations", json={**REG, "endpoint": "not a uri"}), 400, "BadRequestData")
    problem(client.post("/csourceRegistrations", json={**REG, "information": []}), 400, "BadRequestData")
    problem(client.post("/csourceRegistrations", json={k: v for k, v in REG.items() if k != "endpoint"}), 400,
            "BadRequestData")
    problem(client.post("/csourceRegistrations", json=REG, headers={"Content-Type": "application/xml"}), 415,
            "UnsupportedMediaType")
    problem(client.get("/csourceRegistrations", params={"type": "X"}, headers={"Accept": "application/geo+json"}),
            406, "NotAcceptable")
