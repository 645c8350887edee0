"""The agent's MQTT side: paho-mqtt, QoS 1, a message acknowledged only after its batch is stored.

Topics (FIWARE IoT Agent conventions): `/<apikey>/<device_id>/attrs` (UltraLight or JSON, told apart by the
payload), `/json/<apikey>/<device_id>/attrs`, `/ul/<apikey>/<device_id>/attrs`, the same without the leading
slash, and `/<apikey>/<device_id>/attrs/<object_id>` for one raw value.

The session is persistent (MQTT v5, clean start off, a session expiry) under a client id derived from the
database, so messages that were delivered but not yet acknowledged when the connection dropped are delivered
again on reconnect. paho reconnects by itself with exponential backoff (1 s doubling to 30 s). An
acknowledgement is only sent on the connection the message arrived on: after a reconnect the broker resends it,
and the resent copy is stored and acknowledged (at least once).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from typing import Any
from urllib.parse import urlparse

from civicmesh.ingest.agent import Agent, Measurement, Outcome

log = logging.getLogger("civicmesh.ingest.mqtt")

TOPICS = ("/+/+/attrs", "/+/+/attrs/+", "/json/+/+/attrs", "/ul/+/+/attrs", "+/+/attrs", "json/+/+/attrs",
          "ul/+/+/attrs")
SESSION_EXPIRY = 3600  # seconds the broker keeps our session (and unacknowledged messages) while we are away
RECEIVE_MAXIMUM = 65535  # unacknowledged messages the broker may have in flight to us (MQTT v5)


def parse_topic(topic: str) -> tuple[str, str, str, str | None] | None:
    """(format, apikey, device_id, single attribute or None), or None for a topic that is not a measurement."""
    parts = topic.split("/")
    if parts and parts[0] == "":
        parts = parts[1:]
    if len(parts) == 4 and parts[0] in ("json", "ul") and parts[3] == "attrs":
        return parts[0], parts[1], parts[2], None
    if len(parts) == 3 and parts[2] == "attrs":
        return "auto", parts[0], parts[1], None
    if len(parts) == 4 and parts[2] == "attrs" and parts[3]:
        return "raw", parts[0], parts[1], parts[3]
    return None


def default_client_id(database_url: str) -> str:
    """Stable across restarts of one deployment (so its session survives), distinct between deployments
    (Settings.mqtt_client_id, CIVICMESH_MQTT_CLIENT_ID, overrides it)."""
    return "civicmesh-ingest-" + hashlib.sha256(database_url.encode()).hexdigest()[:12]


class MqttIngress:
    def __init__(self, url: str, agent: Agent, client_id: str) -> None:
        parts = urlparse(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"MQTT URL {url!r} should look like mqtt://host:1883")
        self.host = parts.hostname
        self.port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        self.tls = parts.scheme == "mqtts"
        self.username, self.password = parts.username, parts.password
        self.agent = agent
        self.client_id = client_id
        self.client: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.connected = threading.Event()
        self.generation = 0  # bumped on every (re)connect; an ack is only sent on the connection it belongs to
        self.connects = 0
        self.received = 0
        self.ignored = 0
        # Messages received on paho's thread wait here; the event loop takes them all at once, woken once per
        # burst rather than once per message (each wake-up is a system call and a loop iteration).
        self._inbox: list[Measurement] = []
        self._inbox_lock = threading.Lock()

    def start(self) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.loop = asyncio.get_running_loop()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5,
                             manual_ack=True)
        if self.username:
            client.username_pw_set(self.username, self.password)
        if self.tls:
            client.tls_set()
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho leaves it untyped
        properties.SessionExpiryInterval = SESSION_EXPIRY
        properties.ReceiveMaximum = RECEIVE_MAXIMUM
        client.connect_async(self.host, self.port, keepalive=20, clean_start=False, properties=properties)
        client.loop_start()
        self.client = client

    def stop(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None

    # -- paho callbacks (its network thread) -------------------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT connection to %s:%s refused: %s", self.host, self.port, reason)
            return
        self.generation += 1
        self.connects += 1
        log.info("MQTT connected to %s:%s as %s (session present: %s)", self.host, self.port, self.client_id,
                 flags.session_present)
        client.subscribe([(topic, 1) for topic in TOPICS])
        self.connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self.connected.clear()
        log.warning("MQTT connection to %s:%s lost (%s); reconnecting with backoff", self.host, self.port, reason)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self.received += 1
        route = parse_topic(message.topic)
        generation, mid, qos = self.generation, message.mid, message.qos
        if route is None:
            self.ignored += 1
            client.ack(mid, qos)
            return
        fmt, apikey, device_id, attribute = route

        def acknowledge(_: Outcome) -> None:
            # Runs on the event loop once stored (or dead-lettered). paho queues the PUBACK for its thread.
            if qos > 0 and generation == self.generation and self.client is not None:
                self.client.ack(mid, qos)

        measurement = Measurement(apikey, device_id, bytes(message.payload), "auto" if fmt == "raw" else fmt,
                                  "mqtt", attribute=attribute, done=acknowledge)
        with self._inbox_lock:
            self._inbox.append(measurement)
            first = len(self._inbox) == 1
        if first:
            assert self.loop is not None
            self.loop.call_soon_threadsafe(self._hand_over)

    def _hand_over(self) -> None:
        with self._inbox_lock:
            arrived, self._inbox = self._inbox, []
        for measurement in arrived:
            self.agent.submit(measurement)

    # -- for tests: drop the TCP connection as a network fault would ----------------------------------------
    def drop_connection(self) -> None:
        sock = self.client.socket() if self.client is not None else None
        if sock is not None:
            import socket

            sock.shutdown(socket.SHUT_RDWR)
