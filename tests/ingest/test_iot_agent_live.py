"""The IoT agent over real HTTP and real MQTT (Mosquitto), on both engines."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from tests.conftest import IN_CI, LiveServer, drop_postgres, free_port, fresh_postgres_url, start_server
from tests.helpers import problem

from civicmesh.app import service
from civicmesh.ingest.api import IotApi


def mosquitto_up(port: int = 1883) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def require_mosquitto() -> None:
    if mosquitto_up():
        return
    if IN_CI:
        pytest.fail("Mosquitto on 127.0.0.1:1883 is required under CI=true and is unreachable")
    pytest.skip("Mosquitto on 127.0.0.1:1883 is unreachable")


@pytest.fixture(scope="module")
def own_database(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of the same engine for this module's own servers. Two servers on one database would both relay
    its outbox to their durable subscribers (history rows twice), which is not what these tests are about."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path_factory.mktemp('iot') / 'iot.db'}"
        return
    url = fresh_postgres_url("civicmesh_iot")
    yield url
    drop_postgres(url)


@pytest.fixture(scope="module")
def mqtt_server(own_database: str) -> Iterator[LiveServer]:
    require_mosquitto()
    live = start_server(own_database, mqtt_url="mqtt://127.0.0.1:1883")
    wait_for(lambda: service(live.app, IotApi).mqtt.connected.is_set(), "the agent never connected")
    yield live
    live.stop()


def wait_for(check: Callable[[], Any], message: str, timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(message)


def provision(base: str, tenant: str, **device: Any) -> tuple[str, str]:
    apikey, device_id = f"key{uuid.uuid4().hex[:8]}", f"aq{uuid.uuid4().hex[:8]}"
    headers = {"fiware-service": tenant, "fiware-servicepath": "/binjiang"}
    r = httpx.post(f"{base}/iot/services", headers=headers, json={"services": [
        {"apikey": apikey, "entity_type": "AirQualityObserved", "resource": "/iot/d",
         "attributes": [{"object_id": "t", "name": "temperature", "type": "Number", "unitCode": "CEL"}],
         "static_attributes": [{"name": "dataProvider", "type": "Text", "value": "Binjiang EPB"}]}]})
    assert r.status_code == 201, r.text
    r = httpx.post(f"{base}/iot/devices", headers=headers, json={"devices": [
        {"device_id": device_id, "entity_name": f"urn:ngsi-ld:AirQualityObserved:{device_id}",
         "attributes": [{"object_id": "p", "name": "pm25", "type": "Number",
                         "metadata": {"unitCode": {"type": "Text", "value": "GQ"}}}],
         "static_attributes": [{"name": "location", "type": "geo:point", "value": "30.21, 120.20"}], **device}]})
    assert r.status_code == 201, r.text
    return apikey, device_id


def entity(base: str, tenant: str, device_id: str) -> dict:
    r = httpx.get(f"{base}/ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:{device_id}",
                  headers={"NGSILD-Tenant": tenant})
    return r.json() if r.status_code == 200 else {}


def history(base: str, tenant: str, device_id: str, attr: str) -> list:
    r = httpx.get(f"{base}/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:AirQualityObserved:{device_id}",
                  params={"attrs": attr, "options": "temporalValues", "lastN": 100},
                  headers={"NGSILD-Tenant": tenant})
    return r.json().get(attr, {}).get("values", []) if r.status_code == 200 else []


def test_provisioning_crud_with_fiware_headers(server: LiveServer, tenant: str) -> None:
    headers = {"fiware-service": tenant, "fiware-servicepath": "/binjiang"}
    apikey, device_id = provision(server.url, tenant)
    services = httpx.get(f"{server.url}/iot/services", headers=headers).json()
    assert services["count"] == 1 and services["services"][0]["apikey"] == apikey
    assert services["services"][0]["subservice"] == "/binjiang"
    listed = httpx.get(f"{server.url}/iot/devices", headers=headers).json()
    assert listed["count"] == 1 and listed["devices"][0]["device_id"] == device_id
    got = httpx.get(f"{server.url}/iot/devices/{device_id}", headers=headers).json()
    assert got["entity_type"] == "AirQualityObserved" and got["apikey"] == apikey
    assert got["attributes"] == [{"object_id": "p", "name": "pm25", "type": "Number", "unitCode": "GQ"}]
    # Another service does not see it; the same id again is a conflict.
    assert httpx.get(f"{server.url}/iot/devices", headers={"fiware-service": tenant + "x"}).json()["count"] == 0
    problem(httpx.get(f"{server.url}/iot/devices/{device_id}", headers={"fiware-service": tenant + "x"}), 404,
            "ResourceNotFound")
    problem(httpx.post(f"{server.url}/iot/devices", headers=headers, json={"devices": [{"device_id": device_id}]}),
            409, "AlreadyExists")
    problem(httpx.post(f"{server.url}/iot/services", headers={"fiware-service": "other"},
                       json={"services": [{"apikey": apikey, "entity_type": "X"}]}), 409, "AlreadyExists")
    # Update the device's mapping, then delete it.
    r = httpx.put(f"{server.url}/iot/devices/{device_id}", headers=headers, json={"attributes": [
        {"object_id": "p", "name": "pm10", "type": "Number", "unitCode": "GQ"}]})
    assert r.status_code == 204, r.text
    assert httpx.get(f"{server.url}/iot/devices/{device_id}", headers=headers).json()["attributes"][0]["name"] == "pm10"
    assert httpx.post(f"{server.url}/iot/d", params={"k": apikey, "i": device_id}, content=b"p|20").status_code == 200
    assert entity(server.url, tenant, device_id)["pm10"]["value"] == 20
    assert httpx.delete(f"{server.url}/iot/devices/{device_id}", headers=headers).status_code == 204
    problem(httpx.get(f"{server.url}/iot/devices/{device_id}", headers=headers), 404, "ResourceNotFound")
    assert httpx.delete(f"{server.url}/iot/services", params={"apikey": apikey, "resource": "/iot/d"},
                        headers=headers).status_code == 204
    assert httpx.get(f"{server.url}/iot/services", headers=headers).json()["count"] == 0


def test_provisioning_errors_are_problems(server: LiveServer, tenant: str) -> None:
    headers = {"fiware-service": tenant}
    problem(httpx.post(f"{server.url}/iot/devices", headers=headers, content=b"{nope"), 400, "InvalidRequest")
    problem(httpx.post(f"{server.url}/iot/devices", headers=headers, json={"devices": [{"entity_type": "X"}]}), 400,
            "BadRequestData")
    # No apikey and no service group to take it from.
    problem(httpx.post(f"{server.url}/iot/devices", headers=headers, json={"devices": [
        {"device_id": "d1", "entity_type": "X"}]}), 400, "BadRequestData")
    problem(httpx.post(f"{server.url}/iot/devices", headers=headers, json={"devices": [
        {"device_id": "d1", "apikey": "k1", "entity_type": "X", "entity_name": "not a uri"}]}), 400, "BadRequestData")
    problem(httpx.post(f"{server.url}/iot/services", headers=headers, json={"services": [
        {"apikey": "bad key/with slash", "entity_type": "X"}]}), 400, "BadRequestData")
    problem(httpx.post(f"{server.url}/iot/services", headers=headers, json={"services": [
        {"apikey": f"k{uuid.uuid4().hex[:6]}", "jsonldContext": "http://nowhere.invalid/ctx.jsonld"}]}), 503,
        "LdContextNotAvailable")
    assert httpx.get(f"{server.url}/iot/devices", headers=headers).json()["count"] == 0


def test_http_ultralight_and_json_become_updates_with_observed_at(server: LiveServer, tenant: str) -> None:
    apikey, device_id = provision(server.url, tenant)
    r = httpx.post(f"{server.url}/iot/d", params={"k": apikey, "i": device_id}, content=b"p|35.5|t|21")
    assert r.status_code == 200, r.text
    got = entity(server.url, tenant, device_id)
    assert got["type"] == "AirQualityObserved"
    assert got["pm25"]["value"] == 35.5 and got["pm25"]["unitCode"] == "GQ" and got["pm25"]["observedAt"]
    assert got["temperature"]["value"] == 21 and got["temperature"]["unitCode"] == "CEL"
    assert got["dataProvider"]["value"] == "Binjiang EPB"  # static attributes from the group
    assert got["location"]["value"] == {"type": "Point", "coordinates": [120.2, 30.21]}  # and from the device
    r = httpx.post(f"{server.url}/iot/json", params={"k": apikey, "i": device_id},
                   json={"p": {"value": 40, "unitCode": "GQ"}, "TimeInstant": "2025-06-16T10:00:00Z"})
    assert r.status_code == 200, r.text
    assert entity(server.url, tenant, device_id)["pm25"] == {"type": "Property", "value": 40, "unitCode": "GQ",
                                                             "observedAt": "2025-06-16T10:00:00Z"}
    # Two measurements in one UltraLight message, each with its own timestamp, both kept as history.
    body = b"2025-06-16T11:00:00Z|p|41#2025-06-16T11:05:00Z|p|42"
    assert httpx.post(f"{server.url}/iot/d", params={"k": apikey, "i": device_id}, content=body).status_code == 200
    values = wait_for(lambda: [v for v in history(server.url, tenant, device_id, "pm25") if v[0] in (41, 42)],
                      "the two timestamped measurements are not in the history")
    assert sorted(values) == [[41, "2025-06-16T11:00:00Z"], [42, "2025-06-16T11:05:00Z"]]


def test_bad_input_is_dead_lettered_counted_and_never_blocks(server: LiveServer, tenant: str) -> None:
    apikey, device_id = provision(server.url, tenant)
    url = f"{server.url}/iot/d"
    problem(httpx.post(url, params={"k": apikey, "i": device_id}, content=b"p|abc"), 400, "BadRequestData")
    problem(httpx.post(url, params={"k": apikey, "i": device_id}, content=b"p|1|t"), 400, "BadRequestData")
    problem(httpx.post(f"{server.url}/iot/json", params={"k": apikey, "i": device_id}, content=b"{oops"), 400,
            "BadRequestData")
    problem(httpx.post(f"{server.url}/iot/json", params={"k": apikey, "i": device_id},
                       json={"t": {"value": 70, "unitCode": "FAH"}}), 400, "BadRequestData")
    problem(httpx.post(url, params={"k": "wrongkey", "i": device_id}, content=b"p|1"), 403, "Forbidden")
    problem(httpx.post(url, params={"k": apikey, "i": "ghost"}, content=b"p|1"), 404, "ResourceNotFound")
    assert httpx.post(url, params={"k": apikey, "i": device_id}, content=b"p|12").status_code == 200
    assert entity(server.url, tenant, device_id)["pm25"]["value"] == 12
    headers = {"fiware-service": tenant}
    letters = httpx.get(f"{server.url}/iot/deadletters", headers=headers).json()["deadletters"]
    reasons = sorted(d["reason"] for d in letters)
    assert reasons == ["bad_value", "malformed", "malformed", "unit_mismatch", "unknown_device", "wrong_apikey"]
    assert any(d["payload"] == "p|abc" and "should be a number" in d["detail"] for d in letters)
    counters = httpx.get(f"{server.url}/iot/devices/{device_id}", headers=headers).json()["counters"]
    assert counters == {"stored": 1, "bad_value": 1, "malformed": 2, "unit_mismatch": 1, "wrong_apikey": 1}
    only = httpx.get(f"{server.url}/iot/deadletters", headers=headers,
                     params={"device_id": "ghost"}).json()["deadletters"]
    assert [d["reason"] for d in only] == ["unknown_device"]


def test_mqtt_ultralight_and_json_on_every_topic_form(mqtt_server: LiveServer, tenant: str) -> None:
    import paho.mqtt.client as mqtt

    apikey, device_id = provision(mqtt_server.url, tenant)
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    publisher.connect("127.0.0.1", 1883)
    publisher.loop_start()
    try:
        for topic, payload, value in [(f"/{apikey}/{device_id}/attrs", b"p|55|t|19", 55),
                                      (f"/json/{apikey}/{device_id}/attrs", b'{"p": 56}', 56),
                                      (f"/ul/{apikey}/{device_id}/attrs", b"p|57", 57),
                                      (f"/{apikey}/{device_id}/attrs", b'{"p": 58}', 58),
                                      (f"/{apikey}/{device_id}/attrs/p", b"59", 59)]:
            publisher.publish(topic, payload, qos=1).wait_for_publish(10)
            wait_for(lambda v=value: entity(mqtt_server.url, tenant, device_id).get("pm25", {}).get("value") == v,
                     f"{topic} {payload!r} was not stored")
        assert entity(mqtt_server.url, tenant, device_id)["temperature"]["value"] == 19
        # Garbage on the same connection is dead-lettered and the next good message still goes through.
        publisher.publish(f"/ul/{apikey}/{device_id}/attrs", b"p|not-a-number", qos=1).wait_for_publish(10)
        publisher.publish(f"/ul/{apikey}/{device_id}/attrs", b"p|60", qos=1).wait_for_publish(10)
        wait_for(lambda: entity(mqtt_server.url, tenant, device_id).get("pm25", {}).get("value") == 60,
                 "a good message after a bad one was not stored")
        letters = httpx.get(f"{mqtt_server.url}/iot/deadletters", headers={"fiware-service": tenant}).json()
        assert [(d["transport"], d["reason"]) for d in letters["deadletters"]] == [("mqtt", "bad_value")]
    finally:
        publisher.loop_stop()
        publisher.disconnect()


def test_a_qos1_message_is_acknowledged_only_once_stored(mqtt_server: LiveServer, tenant: str) -> None:
    """The publisher's QoS 1 handshake completes end to end; every message acknowledged to the agent's session is
    in the store, and the agent's own acknowledgement count equals what it stored."""
    import paho.mqtt.client as mqtt

    apikey, device_id = provision(mqtt_server.url, tenant)
    ingress = service(mqtt_server.app, IotApi).mqtt
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    publisher.connect("127.0.0.1", 1883)
    publisher.loop_start()
    agent = service(mqtt_server.app, IotApi).agent
    acked: list[int] = []
    original = ingress.client.ack
    before = agent.totals.stored

    def spy(mid: int, qos: int) -> Any:
        # Runs on the server's event loop: note how many measurements the agent had stored when it acknowledged.
        acked.append(agent.totals.stored - before)
        return original(mid, qos)

    ingress.client.ack = spy
    try:
        for n in range(1, 6):
            publisher.publish(f"/{apikey}/{device_id}/attrs", f"p|{n}".encode(), qos=1).wait_for_publish(10)
        wait_for(lambda: len(acked) >= 5, "the agent did not acknowledge five messages")
    finally:
        ingress.client.ack = original
        publisher.loop_stop()
        publisher.disconnect()
    assert all(stored >= k for k, stored in enumerate(acked[:5], start=1))  # the k-th ack after k were stored
    assert len(history(mqtt_server.url, tenant, device_id, "pm25")) == 5


class PrivateMosquitto:
    """A mosquitto this test starts and stops by its own process handle, on a free port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["mosquitto", "-p", str(self.port)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for(lambda: mosquitto_up(self.port), "the private mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def private_mosquitto() -> Iterator[PrivateMosquitto]:
    if shutil.which("mosquitto") is None:
        if IN_CI:
            pytest.fail("the mosquitto binary is required under CI=true")
        pytest.skip("the mosquitto binary is not installed")
    broker = PrivateMosquitto()
    broker.start()
    yield broker
    broker.stop()


def test_the_agent_reconnects_after_the_connection_drops_and_the_broker_restarts(
        private_database: str, tenant: str, private_mosquitto: PrivateMosquitto) -> None:
    import paho.mqtt.client as mqtt

    port = private_mosquitto.port
    url = private_database
    live = start_server(url, mqtt_url=f"mqtt://127.0.0.1:{port}")
    try:
        ingress = service(live.app, IotApi).mqtt
        wait_for(ingress.connected.is_set, "the agent never connected")
        apikey, device_id = provision(live.url, tenant)

        def send(value: int) -> None:
            publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
            publisher.connect("127.0.0.1", port)
            publisher.loop_start()
            publisher.publish(f"/{apikey}/{device_id}/attrs", f"p|{value}".encode(), qos=1).wait_for_publish(10)
            publisher.loop_stop()
            publisher.disconnect()

        send(1)
        wait_for(lambda: entity(live.url, tenant, device_id).get("pm25", {}).get("value") == 1, "first not stored")
        # A network fault: the agent's TCP connection is cut under it.
        connects = ingress.connects
        ingress.drop_connection()
        wait_for(lambda: ingress.connects > connects, "the agent did not reconnect after the socket dropped")
        send(2)
        wait_for(lambda: entity(live.url, tenant, device_id).get("pm25", {}).get("value") == 2,
                 "nothing stored after the reconnect")
        assert httpx.get(f"{live.url}/iot/stats").json()["mqtt"]["connected"] is True
        # The broker itself goes away and comes back: the agent keeps retrying with backoff and resumes.
        connects = ingress.connects
        private_mosquitto.stop()
        wait_for(lambda: not ingress.connected.is_set(), "the agent did not notice the broker stopping")
        private_mosquitto.start()
        wait_for(lambda: ingress.connects > connects, "the agent did not reconnect after a broker restart", 60)
        send(3)
        wait_for(lambda: entity(live.url, tenant, device_id).get("pm25", {}).get("value") == 3,
                 "nothing stored after the broker restart")
    finally:
        live.stop()
