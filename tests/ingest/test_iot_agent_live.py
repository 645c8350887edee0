"""The IoT agent over real HTTP and real MQTT (Mosquitto on 127.0.0.1:1883), on both engines."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from tests.conftest import IN_CI, LiveServer, start_server
from tests.helpers import problem


def mosquitto_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 1883), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def mqtt_server(database_url: str) -> Iterator[LiveServer]:
    if not mosquitto_up():
        if IN_CI:
            pytest.fail("Mosquitto on 127.0.0.1:1883 is required under CI=true")
        pytest.skip("Mosquitto on 127.0.0.1:1883 is unreachable")
    live = start_server(database_url, mqtt_url="mqtt://127.0.0.1:1883")
    yield live
    live.stop()


def provision(base: str, tenant: str) -> tuple[str, str]:
    apikey, device = f"key{uuid.uuid4().hex[:8]}", f"sensor{uuid.uuid4().hex[:8]}"
    headers = {"fiware-service": tenant}
    r = httpx.post(f"{base}/iot/services", headers=headers, json={"services": [
        {"apikey": apikey, "entity_type": "AirQualityObserved", "resource": "/iot/d"}]})
    assert r.status_code == 201, r.text
    r = httpx.post(f"{base}/iot/devices", headers=headers, json={"devices": [
        {"device_id": device, "apikey": apikey, "entity_name": f"urn:ngsi-ld:AirQualityObserved:{device}",
         "attributes": [{"object_id": "p", "name": "pm25", "type": "Number", "unitCode": "GQ"},
                        {"object_id": "t", "name": "temperature", "type": "Number", "unitCode": "CEL"}],
         "static_attributes": [{"name": "source", "type": "Text", "value": "civicmesh test"}]}]})
    assert r.status_code == 201, r.text
    return apikey, device


def entity(base: str, tenant: str, device: str) -> dict:
    r = httpx.get(f"{base}/ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:{device}",
                  headers={"NGSILD-Tenant": tenant})
    return r.json() if r.status_code == 200 else {}


def test_http_ultralight_and_json_become_ngsi_ld_updates(server: LiveServer, tenant: str) -> None:
    apikey, device = provision(server.url, tenant)
    r = httpx.post(f"{server.url}/iot/d", params={"k": apikey, "i": device}, content=b"p|35.5|t|21")
    assert r.status_code == 200, r.text
    got = entity(server.url, tenant, device)
    assert got["pm25"]["value"] == 35.5 and got["pm25"]["unitCode"] == "GQ" and "observedAt" in got["pm25"]
    assert got["source"]["value"] == "civicmesh test"
    r = httpx.post(f"{server.url}/iot/json", params={"k": apikey, "i": device},
                   json={"p": 40, "TimeInstant": "2025-06-16T10:00:00Z"})
    assert r.status_code == 200
    assert entity(server.url, tenant, device)["pm25"] == {"type": "Property", "value": 40.0, "unitCode": "GQ",
                                                          "observedAt": "2025-06-16T10:00:00Z"}


def test_bad_measurements_are_dead_lettered_and_do_not_block(server: LiveServer, tenant: str) -> None:
    apikey, device = provision(server.url, tenant)
    problem(httpx.post(f"{server.url}/iot/d", params={"k": apikey, "i": device}, content=b"p|abc"), 400,
            "BadRequestData")
    problem(httpx.post(f"{server.url}/iot/d", params={"k": apikey, "i": device}, content=b"p|1|t"), 400,
            "BadRequestData")
    problem(httpx.post(f"{server.url}/iot/d", params={"k": apikey, "i": device}, content=b"x|1"), 400,
            "BadRequestData")
    problem(httpx.post(f"{server.url}/iot/d", params={"k": "wrong", "i": device}, content=b"p|1"), 403, "Forbidden")
    problem(httpx.post(f"{server.url}/iot/d", params={"k": apikey, "i": "ghost"}, content=b"p|1"), 404,
            "ResourceNotFound")
    assert httpx.post(f"{server.url}/iot/d", params={"k": apikey, "i": device}, content=b"p|12").status_code == 200
    assert entity(server.url, tenant, device)["pm25"]["value"] == 12.0
    letters = [d for d in httpx.get(f"{server.url}/iot/deadletters").json()["deadletters"] if d["device_id"] == device]
    assert len(letters) == 4 and any("should be a number" in d["reason"] for d in letters)
    assert httpx.get(f"{server.url}/iot/stats").json()[device] == {"accepted": 1, "rejected": 4}


def test_provisioning_errors(server: LiveServer, tenant: str) -> None:
    headers = {"fiware-service": tenant}
    problem(httpx.post(f"{server.url}/iot/devices", headers=headers, json={"devices": [{"entity_type": "X"}]}), 400,
            "BadRequestData")
    problem(httpx.post(f"{server.url}/iot/devices", headers=headers, content=b"{nope"), 400, "InvalidRequest")
    _, device = provision(server.url, tenant)
    listed = httpx.get(f"{server.url}/iot/devices", headers=headers).json()
    assert [d["device_id"] for d in listed["devices"]] == [device]
    assert httpx.delete(f"{server.url}/iot/devices/{device}").status_code == 204
    problem(httpx.get(f"{server.url}/iot/devices/{device}"), 404, "ResourceNotFound")


def test_mqtt_measurements_are_stored_before_they_are_acknowledged(mqtt_server: LiveServer, tenant: str) -> None:
    import paho.mqtt.client as mqtt

    apikey, device = provision(mqtt_server.url, tenant)
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    publisher.connect("127.0.0.1", 1883)
    publisher.loop_start()
    try:
        time.sleep(1.0)  # the agent subscribes on connect
        info = publisher.publish(f"/{apikey}/{device}/attrs", b"p|55|t|19", qos=1)
        info.wait_for_publish(10)
        publisher.publish(f"/json/{apikey}/{device}/attrs", b'{"t": 23}', qos=1).wait_for_publish(10)
        deadline = time.monotonic() + 10
        got: dict = {}
        while time.monotonic() < deadline:
            got = entity(mqtt_server.url, tenant, device)
            if got.get("temperature", {}).get("value") == 23.0:
                break
            time.sleep(0.1)
        assert got["pm25"]["value"] == 55.0 and got["temperature"]["value"] == 23.0
    finally:
        publisher.loop_stop()
        publisher.disconnect()
