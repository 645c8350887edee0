"""Oversized bodies against a live server: refused at the limit as they stream, with authentication off too."""

from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest

from civicmesh.config import Settings
from tests.conftest import LiveServer, free_port

pytestmark = pytest.mark.live

LIMIT = 1024 * 1024
CHUNK = 64 * 1024
ATTEMPT = 300 * 1024 * 1024  # what the red team sent (finding 10)


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # --no-auth: the limit is the platform's, not the identity middleware's.
    db = tmp_path_factory.mktemp("limits") / "c.db"
    live = LiveServer(Settings(database_url=f"sqlite:///{db}", port=free_port(), no_auth=True,
                               max_body_bytes=LIMIT)).start()
    yield live
    live.stop()


def chunked_post(port: int, path: str, total: int) -> tuple[int, dict[str, str], bytes, int]:
    """POST `total` bytes with Transfer-Encoding: chunked over a raw socket, stopping as soon as the server
    answers; (status, headers, body, bytes sent)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n".encode())
    chunk = b"%x\r\n" % CHUNK + b" " * CHUNK + b"\r\n"
    sent = 0
    answer = b""
    deadline = time.monotonic() + 120
    while sent < total and time.monotonic() < deadline:
        if select.select([sock], [], [], 0)[0]:  # the server answered (or closed): stop sending
            answer = sock.recv(65536)
            break
        try:
            sock.sendall(chunk)  # whole chunks only, so the framing stays valid however far it gets
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            break
        sent += CHUNK
    if sent >= total:
        # The whole body fit in the socket buffers before the server answered; it may have answered and closed by
        # now, so a reset here is that answer arriving, not a failure.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"0\r\n\r\n")
    while b"\r\n\r\n" not in answer:
        more = sock.recv(65536)
        if not more:
            break
        answer += more
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        more = sock.recv(65536)
        if not more:
            break
        body += more
    sock.close()
    return int(lines[0].split()[1]), headers, body, sent


def test_a_chunked_body_is_stopped_at_the_limit_not_read_whole(open_server: LiveServer) -> None:
    status, headers, body, sent = chunked_post(open_server.port, "/ngsi-ld/v1/entityOperations/upsert", ATTEMPT)
    assert status == 413 and headers["content-type"].startswith("application/problem+json")
    problem = orjson.loads(body)
    assert problem["type"].endswith("/PayloadTooLarge") and f"limit of {LIMIT} bytes" in problem["detail"]
    # The server answered while the client was still sending: far less than the 300 MB went out (what did is
    # the limit plus what the sockets' buffers hold).
    assert sent < 64 * 1024 * 1024, sent
    # ... and it still serves others.
    assert httpx.get(f"{open_server.url}/health").status_code == 200


@pytest.mark.parametrize("path", ["/alerts/rules", "/iot/devices", "/ledger/entries", "/exchange/products"])
def test_rooms_that_read_bodies_themselves_are_capped(open_server: LiveServer, path: str) -> None:
    # Finding 10: /alerts/rules and /iot/devices read whatever came; now every room is behind the limit.
    status, _, body, _ = chunked_post(open_server.port, path, 8 * LIMIT)
    assert status == 413, body


def test_a_declared_length_over_the_limit_is_refused_before_reading(open_server: LiveServer) -> None:
    r = httpx.post(f"{open_server.url}/ngsi-ld/v1/entities", content=b"x" * (LIMIT + 1),
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.headers["content-type"].startswith("application/problem+json")
    assert f"the limit is {LIMIT}" in r.json()["detail"]


def test_a_route_declares_a_smaller_limit_of_its_own(open_server: LiveServer) -> None:
    # Alert rules are small: 64 KiB, below the platform's limit, in both a declared length and a chunked body.
    rule = {"id": "big", "entityType": "Bridge", "attribute": "deflection", "kind": "threshold",
            "tiers": [{"severity": "high", "above": 1}], "name": "x" * (70 * 1024)}
    r = httpx.post(f"{open_server.url}/alerts/rules", json=rule)
    assert r.status_code == 413 and "65536" in r.json()["detail"]
    status, _, body, _ = chunked_post(open_server.port, "/alerts/rules", 256 * 1024)
    assert status == 413 and b"65536" in body
    # Under the limit the room answers as before.
    small = {**rule, "name": "small"}
    assert httpx.post(f"{open_server.url}/alerts/rules", json=small).status_code == 201
