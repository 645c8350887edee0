"""A lean MQTT 3.1.1 load generator: QoS 1 PUBLISH packets encoded in bulk and written to one socket.

The benchmarks run the publisher on the same two cores as the broker under test, so the load generator must cost
little: paho's publish() spends ~100 µs of Python per message and capped a bench at ~8k messages/s before the
server did any work. Here a whole burst is encoded into one buffer and sent with one `sendall`; a reader thread
counts the PUBACKs (each is 4 bytes: 0x40 0x02 and the packet id).
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterable


def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def _text(value: str) -> bytes:
    raw = value.encode()
    return struct.pack("!H", len(raw)) + raw


class Publisher:
    def __init__(self, host: str, port: int, client_id: str) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        body = _text("MQTT") + bytes([4, 2]) + struct.pack("!H", 60) + _text(client_id)  # v3.1.1, clean session
        self.sock.sendall(b"\x10" + _length(len(body)) + body)
        connack = self.sock.recv(4)
        if connack[:2] != b"\x20\x02" or connack[3:4] != b"\x00":
            raise ConnectionError(f"MQTT broker refused the connection: {connack!r}")
        self.sent = 0
        self.acked = 0
        self._packet_id = 0
        self._reader = threading.Thread(target=self._read_acks, daemon=True)
        self._reader.start()

    def _read_acks(self) -> None:
        pending = 0
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            pending += len(data)
            self.acked += pending // 4
            pending %= 4

    def publish(self, messages: Iterable[tuple[str, bytes]]) -> None:
        """Send (topic, payload) pairs at QoS 1 in one write."""
        packets = []
        for topic, payload in messages:
            self._packet_id = self._packet_id % 65535 + 1
            body = _text(topic) + struct.pack("!H", self._packet_id) + payload
            packets.append(b"\x32" + _length(len(body)) + body)
        self.sock.sendall(b"".join(packets))
        self.sent += len(packets)

    def close(self) -> None:
        try:
            self.sock.sendall(b"\xe0\x00")  # DISCONNECT
        finally:
            self.sock.close()
