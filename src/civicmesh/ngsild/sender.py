"""A small pooled HTTP/1.1 client for notifications to plain http:// receivers.

httpx costs about a millisecond of CPU per request, which caps a broker at roughly a thousand notifications a
second on one core, and even asyncio streams spend most of a notification's cost on their awaits. A notification
is one POST with a JSON body and a status code back, so this client writes the request bytes on a keep-alive
connection and a protocol callback reads one framed answer (Content-Length, chunked, or until close).
https:// receivers keep using httpx.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from functools import lru_cache
from urllib.parse import urlsplit

from civicmesh.endpoints import EndpointRefused, check_headers


class ReceiverError(Exception):
    """The receiver could not be reached, closed the connection, or answered something that is not HTTP."""


@lru_cache(maxsize=1024)
def _target(url: str) -> tuple[str, int, bytes]:
    """(host, port, request line and Host header) of a receiver URL."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"HttpSender only speaks http://, not {url!r}")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, parts.port or 80, f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n".encode("latin-1")


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request in flight at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.waiter: asyncio.Future[int] | None = None
        self.open = True
        self.keep = True
        self._until_close: int | None = None  # status of an answer framed by the end of the connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self.waiter is not None and not self.waiter.done():
            if self._until_close is not None:
                self.keep = False
                self.waiter.set_result(self._until_close)
            else:
                self.waiter.set_exception(ReceiverError(f"the receiver closed the connection ({exc or 'EOF'})"))

    def send(self, request: bytes) -> asyncio.Future[int]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.buffer, self._until_close = b"", None
        self.transport.write(request)
        return self.waiter

    def close(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.waiter.done():
            self.keep = False  # nothing asked: the connection is out of step, do not reuse it
            return
        self.buffer += data
        if self._until_close is not None:
            return
        try:
            status = self._parse()
        except (ValueError, IndexError) as exc:
            self.keep = False
            self.waiter.set_exception(ReceiverError(f"not an HTTP answer: {exc}"))
            return
        if status is not None:
            self.waiter.set_result(status)

    def _parse(self) -> int | None:
        """The status once a whole answer is in the buffer, else None (more to come)."""
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return None
            head = self.buffer[:end].lower()
            if not head.startswith(b"http/1."):
                raise ValueError(repr(self.buffer[:40]))
            status = int(head[9:12])
            if status >= 200:
                break
            self.buffer = self.buffer[end + 4:]  # an interim answer (100 Continue): the real one follows
        self.keep = head[5:8] == b"1.1" and b"\r\nconnection: close" not in head
        body = end + 4
        if status in (204, 304):
            return status
        if b"\r\ntransfer-encoding:" in head and b"chunked" in head.split(b"\r\ntransfer-encoding:", 1)[1][:40]:
            pos = body
            while True:
                line_end = self.buffer.find(b"\r\n", pos)
                if line_end < 0:
                    return None
                size = int(self.buffer[pos:line_end].split(b";")[0], 16)
                if size == 0:
                    if self.buffer[line_end + 2:line_end + 4] == b"\r\n":
                        return status
                    return status if self.buffer.find(b"\r\n\r\n", line_end) >= 0 else None
                pos = line_end + 2 + size + 2
                if pos > len(self.buffer):
                    return None
        marker = head.find(b"\r\ncontent-length:")
        if marker >= 0:
            length = int(head[marker + 17:].split(b"\r\n", 1)[0])
            return status if len(self.buffer) - body >= length else None
        self._until_close = status
        return None


def _expire(answer: asyncio.Future[int]) -> None:
    if not answer.done():
        answer.set_exception(TimeoutError("the receiver did not answer in time"))


class HttpSender:
    """POSTs over keep-alive connections, at most `per_host` open to one receiver at a time."""

    def __init__(self, *, timeout: float = 10.0, per_host: int = 32) -> None:
        self.timeout = timeout
        self.per_host = per_host
        self._idle: dict[tuple[str, int], list[_Connection]] = defaultdict(list)
        self._slots: dict[tuple[str, int], asyncio.Semaphore] = {}

    async def post(self, url: str, body: bytes, headers: dict[str, str], *, address: str | None = None) -> int:
        """Send one POST; return the status code. Raises ReceiverError (or TimeoutError) when there is none.
        With `address` the connection goes to that address (checked by the endpoint policy), not to whatever
        the host name resolves to now."""
        host, port, start = _target(url)
        try:
            check_headers(headers)  # no CR/LF into the request: a value must not end the header block
        except EndpointRefused as exc:
            raise ReceiverError(str(exc)) from None
        host = address or host
        fields = "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k.lower() not in ("host", "content-length"))
        request = b"".join((start, f"{fields}Content-Length: {len(body)}\r\n\r\n".encode("latin-1"), body))
        key = (host, port)
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = asyncio.Semaphore(self.per_host)
        async with slots:
            return await self._exchange(key, request)

    async def _exchange(self, key: tuple[str, int], request: bytes) -> int:
        idle = self._idle[key]
        while idle:  # a pooled connection may have been closed by the receiver meanwhile: then try the next
            conn = idle.pop()
            if not conn.open:
                continue
            try:
                return await self._roundtrip(key, conn, request)
            except ReceiverError:
                conn.close()
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(_Connection, *key), self.timeout)
        except OSError as exc:
            raise ReceiverError(f"cannot connect to {key[0]}:{key[1]}: {exc}") from exc
        return await self._roundtrip(key, conn, request)

    async def _roundtrip(self, key: tuple[str, int], conn: _Connection, request: bytes) -> int:
        answer = conn.send(request)
        # A timer on the answer's future, not asyncio.wait_for: that wraps every request in a task of its own.
        timer = asyncio.get_running_loop().call_later(self.timeout, _expire, answer)
        try:
            status = await answer
        except BaseException:
            conn.close()
            raise
        finally:
            timer.cancel()
        if conn.keep and conn.open:
            self._idle[key].append(conn)
        else:
            conn.close()
        return status

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
