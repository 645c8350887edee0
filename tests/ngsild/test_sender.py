"""The notification sender against receivers that frame their answers every way HTTP/1.1 allows."""

from __future__ import annotations

import asyncio

import pytest

from civicmesh.ngsild.sender import HttpSender, ReceiverError

pytestmark = pytest.mark.live  # each test starts an asyncio receiver on a loopback port

ANSWERS = {
    "/length": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    "/chunked": b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n",
    "/empty": b"HTTP/1.1 204 No Content\r\n\r\n",
    "/continue": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n",
    "/close": b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
    "/until-close": b"HTTP/1.0 200 OK\r\n\r\nbody framed by the end of the connection",
    "/failing": b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops",
}


async def _receiver(seen: list[bytes]) -> tuple[asyncio.AbstractServer, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                seen.append(await reader.readexactly(length))
                path = head.split(b" ")[1].decode()
                writer.write(ANSWERS[path])
                await writer.drain()
                if path in ("/close", "/until-close"):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_every_answer_framing_is_read_and_connections_are_reused_only_when_they_may_be() -> None:
    async def scenario() -> None:
        seen: list[bytes] = []
        server, port = await _receiver(seen)
        sender = HttpSender(timeout=5)
        try:
            expected = {"/length": 200, "/chunked": 201, "/empty": 204, "/continue": 202, "/close": 200,
                        "/until-close": 200, "/failing": 500}
            for _ in range(2):  # twice: the second round runs on pooled connections where they stayed open
                for path, status in expected.items():
                    assert await sender.post(f"http://127.0.0.1:{port}{path}", b'{"n": 1}',
                                             {"Content-Type": "application/json"}) == status
            assert seen == [b'{"n": 1}'] * 14
            many = await asyncio.gather(*(sender.post(f"http://127.0.0.1:{port}/length", b"x", {})
                                          for _ in range(100)))
            assert many == [200] * 100
        finally:
            await sender.aclose()
            server.close()
            await server.wait_closed()
        # The receiver is gone now: the sender says so instead of hanging.
        with pytest.raises(ReceiverError):
            await HttpSender(timeout=2).post(f"http://127.0.0.1:{port}/length", b"x", {})

    asyncio.run(scenario())


def test_a_receiver_that_never_answers_times_out() -> None:
    async def scenario() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(TimeoutError):
                await HttpSender(timeout=0.3).post(f"http://127.0.0.1:{port}/", b"x", {})
        finally:
            server.close()

    asyncio.run(scenario())
