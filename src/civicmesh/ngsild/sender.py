"""A small pooled HTTP/1.1 client for notifications to plain http:// receivers.

httpx costs about a millisecond of CPU per request, which caps a broker at roughly a thousand notifications a
second on one core. A notification is one POST with a JSON body and a status code back, so this client only writes
the request bytes and reads one framed answer (Content-Length, chunked, or until close), keeping connections alive
per receiver. https:// receivers keep using httpx.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from urllib.parse import urlsplit


class ReceiverError(Exception):
    """The receiver could not be reached or answered something that is not HTTP."""


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:  # already gone
            pass


class HttpSender:
    """POSTs over keep-alive connections, at most `per_host` open to one receiver at a time."""

    def __init__(self, *, timeout: float = 10.0, per_host: int = 32) -> None:
        self.timeout = timeout
        self.per_host = per_host
        self._idle: dict[tuple[str, int], list[_Connection]] = defaultdict(list)
        self._slots: dict[tuple[str, int], asyncio.Semaphore] = {}

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """Send one POST; return the status code. Raises ReceiverError (or TimeoutError) when there is none."""
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"HttpSender only speaks http://, not {url!r}")
        host, port = parts.hostname, parts.port or 80
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = [f"POST {target} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("host", "content-length")]
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        key = (host, port)
        slots = self._slots.setdefault(key, asyncio.Semaphore(self.per_host))
        async with slots:
            return await asyncio.wait_for(self._exchange(key, request), self.timeout)

    async def _exchange(self, key: tuple[str, int], request: bytes) -> int:
        idle = self._idle[key]
        while idle:  # a pooled connection may have been closed by the receiver meanwhile: then try the next
            conn = idle.pop()
            if conn.reader.at_eof():
                conn.close()
                continue
            try:
                return await self._roundtrip(key, conn, request)
            except (ConnectionError, asyncio.IncompleteReadError, ReceiverError):
                conn.close()
            except BaseException:
                conn.close()
                raise
        try:
            reader, writer = await asyncio.open_connection(*key)
        except OSError as exc:
            raise ReceiverError(f"cannot connect to {key[0]}:{key[1]}: {exc}") from exc
        conn = _Connection(reader, writer)
        try:
            return await self._roundtrip(key, conn, request)
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            conn.close()
            raise ReceiverError(f"{key[0]}:{key[1]} closed the connection: {exc!r}") from exc
        except BaseException:
            conn.close()
            raise

    async def _roundtrip(self, key: tuple[str, int], conn: _Connection, request: bytes) -> int:
        conn.writer.write(request)
        await conn.writer.drain()
        reader = conn.reader
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1."):
                raise ReceiverError(f"not an HTTP answer: {head[:40]!r}")
            status = int(head[9:12])
            if status >= 200:  # skip interim 1xx answers (100 Continue)
                break
        fields: dict[bytes, bytes] = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name:
                fields[name.strip().lower()] = value.strip().lower()
        keep = head[5:8] == b"1.1" and fields.get(b"connection") != b"close"
        if status in (204, 304):
            pass
        elif fields.get(b"transfer-encoding", b"").endswith(b"chunked"):
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await reader.readexactly(size + 2)
                if size == 0:
                    break
        elif b"content-length" in fields:
            await reader.readexactly(int(fields[b"content-length"]))
        else:
            await reader.read()  # framed by the end of the connection
            keep = False
        if keep:
            self._idle[key].append(conn)
        else:
            conn.close()
        return status

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
