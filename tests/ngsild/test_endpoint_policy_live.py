"""Finding 4 of issue 13: notifications and context sources cannot be pointed at the server's own network, and
receiverInfo cannot inject headers. A live server with an empty allow list (as in production) on both engines."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from tests.conftest import LiveServer, start_server
from tests.helpers import problem
from tests.ngsild.test_subscriptions_live import Receiver, subscription, vehicle

from civicmesh import endpoints
from civicmesh.ngsild.sender import HttpSender, ReceiverError

# What the red-team pass used, and the spellings that name the same places.
REFUSED = ["http://127.0.0.1:5432/", "http://169.254.169.254/latest/meta-data/", "http://[::1]:8080/notify",
           "http://2130706433:5432/", "http://0177.0.0.1/", "http://0x7f.0.0.1/", "http://127.1/",
           "http://10.1.2.3/", "http://192.168.0.10/", "http://172.16.0.1/", "http://[::ffff:127.0.0.1]/",
           "http://0.0.0.0:5432/", "http://localhost:5432/", "http://100.100.100.200/", "http://[fd00:ec2::254]/",
           "http://[fe80::1]/", "mqtt://127.0.0.1:1883/topic", "mqtt://169.254.169.254/x", "https://10.0.0.1/"]


@pytest.fixture(scope="module")
def strict(database_url: str) -> Iterator[LiveServer]:
    """A server whose endpoint policy admits public addresses only (CIVICMESH_ENDPOINT_ALLOW empty)."""
    live = start_server(database_url, endpoint_allow="")
    yield live
    live.stop()


def _client(live: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=live.url + "/ngsi-ld/v1", headers={"NGSILD-Tenant": f"t{uuid.uuid4().hex[:10]}"},
                        timeout=30)


def test_subscriptions_to_internal_addresses_are_refused_at_creation(strict: LiveServer) -> None:
    with _client(strict) as c:
        for uri in REFUSED:
            body = problem(c.post("/subscriptions", json=subscription(uri)), 400, "BadRequestData")
            assert "refused" in body["detail"], uri
        # A subscription that passed creation cannot be moved there by an update either.
        ok = subscription("http://93.184.216.34/notify")
        assert c.post("/subscriptions", json=ok).status_code == 201
        r = c.patch(f"/subscriptions/{ok['id']}", json={"notification": {"endpoint": {
            "uri": "http://169.254.169.254/", "accept": "application/json"}}},
            headers={"Content-Type": "application/merge-patch+json"})
        problem(r, 400, "BadRequestData")
        assert c.get(f"/subscriptions/{ok['id']}").json()["notification"]["endpoint"]["uri"] == \
            "http://93.184.216.34/notify"
        assert [s["id"] for s in c.get("/subscriptions").json()] == [ok["id"]]


def test_context_sources_at_internal_addresses_are_refused(strict: LiveServer) -> None:
    with _client(strict) as c:
        for uri in ("http://127.0.0.1:5432", "http://169.254.169.254", "http://2130706433"):
            reg = {"id": f"urn:ngsi-ld:ContextSourceRegistration:{uuid.uuid4().hex[:8]}",
                   "type": "ContextSourceRegistration", "information": [{"entities": [{"type": "Vehicle"}]}],
                   "endpoint": uri}
            problem(c.post("/csourceRegistrations", json=reg), 400, "BadRequestData")
        assert c.get("/csourceRegistrations").json() == []


def test_receiver_info_cannot_inject_headers(strict: LiveServer) -> None:
    smuggle = "a\r\nX-Injected: yes\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x"
    with _client(strict) as c:
        for info in ([{"key": "X-Token", "value": smuggle}], [{"key": "Bad Name", "value": "v"}],
                     [{"key": "X-Nul", "value": "a\x00b"}], [{"key": "X\r\nInjected", "value": "v"}]):
            sub = subscription("http://93.184.216.34/notify")
            sub["notification"]["endpoint"]["receiverInfo"] = info
            problem(c.post("/subscriptions", json=sub), 400, "BadRequestData")
        assert c.get("/subscriptions").json() == []
        sub = subscription("http://93.184.216.34/notify")
        sub["notification"]["endpoint"]["receiverInfo"] = [{"key": "X-Token", "value": "fine value 1"}]
        assert c.post("/subscriptions", json=sub).status_code == 201


@pytest.mark.live
def test_a_name_that_resolves_to_loopback_gets_nothing_sent(private_database: str) -> None:
    """Creation cannot see through a host name; the check after resolution at send time does. A database of its
    own, so no other (lenient) test server delivers this server's queue."""
    name = socket.gethostname()
    try:
        address = ipaddress.ip_address(socket.gethostbyname(name))
    except OSError:
        pytest.skip(f"this machine's name {name!r} does not resolve")
    if not address.is_loopback:
        pytest.skip(f"this machine's name {name!r} resolves to {address}, not to loopback")
    receiver, strict = Receiver().start(), start_server(private_database, endpoint_allow="")
    try:
        with _client(strict) as c:
            sub = subscription(receiver.url.replace("127.0.0.1", name))
            assert c.post("/subscriptions", json=sub).status_code == 201
            assert c.post("/entities", json=vehicle(7)).status_code == 201
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                status = c.get(f"/subscriptions/{sub['id']}").json()["notification"]
                if status.get("lastFailure"):
                    break
                time.sleep(0.1)
            assert status.get("lastFailure") and not status.get("lastSuccess"), status
        assert receiver.received == []
    finally:
        strict.stop()
        receiver.stop()


def test_policy_decisions() -> None:
    allow = ""
    for uri in REFUSED:
        with pytest.raises(Exception, match="refused"):
            endpoints.check_uri(uri, allow)
    for uri in ("http://93.184.216.34/notify", "https://hooks.example.org/x", "mqtt://8.8.8.8/topic"):
        endpoints.check_uri(uri, allow)
    # The allow list opens loopback (any spelling of it) but never link-local or metadata addresses.
    endpoints.check_uri("http://2130706433:9/", "127.0.0.1")
    endpoints.check_uri("http://localhost:9/", "127.0.0.1")
    endpoints.check_uri("http://10.0.0.5:8080/", "10.0.0.0/8")
    endpoints.check_uri("http://10.0.0.5:8080/", "10.0.0.5:8080")
    with pytest.raises(Exception, match="refused"):
        endpoints.check_uri("http://10.0.0.5:8081/", "10.0.0.5:8080")
    for uri in ("http://169.254.169.254/", "http://[fe80::1]/", "http://100.100.100.200/"):
        with pytest.raises(Exception, match="never allowed"):
            endpoints.check_uri(uri, "0.0.0.0/0,::/0,169.254.169.254")
    with pytest.raises(ValueError):
        endpoints.parse_allow("10.0.0.1:http")


def test_send_time_resolution_pins_the_checked_address() -> None:
    assert asyncio.run(endpoints.resolve("http://localhost:9/", "localhost")) in ("127.0.0.1", "::1")
    with pytest.raises(endpoints.EndpointRefused):
        asyncio.run(endpoints.resolve("http://localhost:9/", ""))
    with pytest.raises(endpoints.EndpointRefused):
        asyncio.run(endpoints.resolve("http://0x7f.1:9/", "10.0.0.0/8"))


@pytest.mark.live  # an asyncio receiver on a loopback port
def test_the_sender_refuses_header_values_with_line_breaks() -> None:
    """A queued row written before creation checked receiverInfo must not smuggle a request either."""
    seen: list[bytes] = []

    async def run() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.append(await reader.read(65536))
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sender = HttpSender(timeout=5)
        try:
            with pytest.raises(ReceiverError, match="control characters"):
                await sender.post(f"http://127.0.0.1:{port}/notify", b"{}",
                                  {"X-Token": "a\r\nX-Injected: yes\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x"})
            assert await sender.post(f"http://127.0.0.1:{port}/notify", b"{}", {"X-Token": "ok"}) == 204
        finally:
            await sender.aclose()
            server.close()
            await server.wait_closed()

    asyncio.run(run())
    assert len(seen) == 1 and b"X-Injected" not in seen[0] and b"smuggled" not in seen[0]
