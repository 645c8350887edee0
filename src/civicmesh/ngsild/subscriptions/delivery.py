"""Delivery of queued notifications: send what is due, settle the queue, keep receivers' outages apart.

A delivery worker sends what is due over HTTP(S) or MQTT, retries failures with exponential backoff and deletes a
notification only once the receiver accepted it, so neither a broker restart nor a receiver outage loses one. A
receiver that hangs opens an outage (the breaker): nothing more is sent to it until the outage ends, so one dead
webhook cannot hold every other subscriber's notifications behind its timeouts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any
from urllib.parse import urlparse

import httpx
import orjson

from civicmesh import endpoints
from civicmesh.events import OutboxRelay
from civicmesh.ngsild.context import CORE_CONTEXT_URL
from civicmesh.ngsild.http import CONTEXT_REL, JSONLD
from civicmesh.ngsild.model import now_iso
from civicmesh.ngsild.sender import HttpSender
from civicmesh.ngsild.subscriptions.matcher import KIND, status_of
from civicmesh.workers import Worker

log = logging.getLogger("civicmesh.subscriptions")

MAX_BACKOFF = 300.0
SENDERS = 32  # concurrent POSTs (and keep-alive connections) per receiver
PER_RECEIVER = 400  # notifications per receiver per delivery round
SLOW_FAILURE = 1.0  # seconds: a send that fails after this long means the receiver hangs (see _deliver_to)
FAILURE_LOG_PERIOD = 60.0
# (tenant, subscription id, dedupe key, payload, due time): one row of the durable notification queue
QueueRows = list[tuple[str, str, str, bytes, float]]
# (queue id, tenant, subscription id, payload, attempts so far): one due notification
DueRow = tuple[int, str, str, bytes, int]
DueRows = list[DueRow]
Work = list[tuple[DueRow, str, dict[str, str], bytes]]  # due rows with their requests (URI, headers, body)
Retries = list[tuple[int, float, str]]  # (queue id, due again at, why)


class Delivery:
    """The notification queue's one sender per database, with its outage breaker and unsettled outcomes."""

    endpoint_allow = ""  # what the endpoint policy admits besides public addresses (Settings.endpoint_allow)

    def __init__(self, store: Any, relay: OutboxRelay,
                 periodic: Callable[[], Awaitable[None]] | None = None) -> None:
        self.store = store
        self.relay = relay
        self.periodic = periodic  # timeInterval subscriptions: queued by their own clock, checked every round
        self.retry_base = 1.0
        self._logged: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._sending = Worker("notifications", self._deliver_forever)
        self._client: httpx.AsyncClient | None = None  # https:// receivers
        self._sender = HttpSender()  # http:// receivers: pooled keep-alive connections, little CPU per POST
        self._periodic_checked = 0.0
        # Receivers (origins) that could not be reached: nothing is sent to them until `until`, so one hanging
        # or vanished webhook cannot hold every other subscriber's notifications behind its timeouts.
        self._outages: dict[str, _Outage] = {}
        # Delivery outcomes sent but not yet settled, per (tenant, subscription): (sent, failed, last attempt).
        # Reads of a subscription show them, so a client told of a notification sees it in the status at once.
        self.unsettled: dict[tuple[str, str], tuple[int, int, str]] = {}

    async def enqueue(self, rows: QueueRows) -> None:
        """Put due notifications in the durable queue and wake the sender."""
        if rows:
            await self.store.enqueue_notifications(rows)
            self._wake.set()

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=10.0, limits=httpx.Limits(max_connections=50))
        self._sending.start()

    async def stop(self) -> None:
        await self._sending.stop()
        if self._client:
            await self._client.aclose()
        await self._sender.aclose()

    def _log_failure(self, message: str) -> None:
        """Log a failing delivery round with its traceback, but an outage that lasts (the database gone) once a
        minute rather than four times a second."""
        now = time.monotonic()
        if now - self._logged.get(message, -FAILURE_LOG_PERIOD) >= FAILURE_LOG_PERIOD:
            self._logged[message] = now
            log.exception(message)

    async def _deliver_forever(self) -> None:
        while True:
            if not self.relay.owner:
                # One sender per database: the process that owns the outbox relay (and so fills the queue) sends;
                # other workers on the same database stand by, so no notification goes out twice concurrently.
                await asyncio.sleep(1.0)
                continue
            if time.monotonic() - self._periodic_checked >= 0.25:
                self._periodic_checked = time.monotonic()
                try:
                    if self.periodic is not None:
                        await self.periodic()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self._log_failure("periodic notifications failed; retrying")
            try:
                moved = await self.deliver_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                self._log_failure("notification delivery round failed; retrying")
                moved = 0
            if moved == 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), 0.5)
                except TimeoutError:
                    pass

    async def deliver_due(self, limit: int = PER_RECEIVER) -> int:
        """One delivery round; returns how many due rows it settled (sent, set to retry, or dropped), so the
        caller goes straight on while a backlog is moving."""
        due = await self.store.due_notifications(time.time(), limit)
        if not due:
            return 0
        # A subscription deleted or expired since its notifications were queued sends nothing more; a paused one
        # keeps them until it is active again.
        keys = {(t, s) for _, t, s, _, _ in due}
        current: dict[tuple[str, str], dict[str, Any] | None] = {}
        for tenant in {t for t, _ in keys}:
            wanted = [s for t, s in keys if t == tenant]
            if len(wanted) > 3:  # one read of the tenant's subscriptions beats a round trip per subscription
                stored = {d["id"]: d for d in await self.store.list_documents(tenant, KIND)}
                current.update({(tenant, s): stored.get(s) for s in wanted})
            else:
                current.update({(tenant, s): await self.store.get_document(tenant, KIND, s) for s in wanted})
        state = {key: "deleted" if sub is None else status_of(sub) for key, sub in current.items()}
        dropped: list[int] = [n for n, t, s, _, _ in due if state[(t, s)] in ("deleted", "expired")]
        held = [n for n, t, s, _, _ in due if state[(t, s)] == "paused"]
        if dropped or held:
            skip = set(dropped) | set(held)
            due = [row for row in due if row[0] not in skip]
        retry: Retries = [(n, time.time() + 5.0, "subscription not active") for n in held]
        groups = self._reachable(_by_receiver(due), retry)
        if retry or dropped:
            await self.store.settle_notifications([], retry, dropped, [])
        # Each receiver's notifications are sent and settled on their own, so a slow receiver delays neither
        # the others' sending nor their delivery status (which a client may read as soon as it has been told).
        settled = await asyncio.gather(*(self._deliver_to(origin, group) for origin, group in groups.items()))
        return len(retry) + len(dropped) + sum(settled)

    async def _deliver_to(self, origin: str, group: Work) -> int:
        """Send one receiver's due notifications (SENDERS at a time, at most PER_RECEIVER) and settle them: the
        sent ones deleted, the failed ones pushed back with exponential backoff, the subscriptions' status
        updated, in one transaction. A receiver that fails slowly (no answer within SLOW_FAILURE: it hangs or
        the network drops packets) stops its workers and is left alone for a growing while (`_outages`); one
        that fails fast (connection refused) is only retried with each notification's own backoff.
        Returns how many rows it settled; unsent rows stay due for the next round."""
        queue = list(reversed(group[:PER_RECEIVER]))
        outcome: list[tuple[DueRow, str | None]] = []
        round_started = time.time()

        async def worker() -> None:
            while queue and not self._down(origin, round_started):
                row, uri, headers, body = queue.pop()
                began = time.monotonic()
                error, answered = await self._send(uri, headers, body)
                outcome.append((row, error))
                key = (row[1], row[2])
                sent, failed, _ = self.unsettled.get(key, (0, 0, ""))
                self.unsettled[key] = (sent + (error is None), failed + (error is not None), now_iso())
                if not answered and time.monotonic() - began >= SLOW_FAILURE:
                    self._lost(origin, error or "", round_started)
                elif error is None:
                    self._outages.pop(origin, None)

        await asyncio.gather(*(worker() for _ in range(min(SENDERS, len(queue)))))
        delivered: list[int] = []
        retry: Retries = []
        outcomes: dict[tuple[str, str], tuple[int, int]] = {}
        for (nid, tenant, sub_id, _payload, attempts), error in outcome:
            sent, failed = outcomes.get((tenant, sub_id), (0, 0))
            if error is None:
                delivered.append(nid)
                outcomes[(tenant, sub_id)] = (sent + 1, failed)
            else:
                delay = min(MAX_BACKOFF, self.retry_base * 2 ** attempts)
                retry.append((nid, time.time() + delay, error))
                outcomes[(tenant, sub_id)] = (sent, failed + 1)
        stamp = now_iso()
        # The delivery status lives in the subscription's notification member (NGSI-LD NotificationParams); it is
        # updated in the transaction that settles the queue, on the stored subscription as it is then.
        updates = [(tenant, KIND, sub_id, _status_change(sent, failed, stamp))
                   for (tenant, sub_id), (sent, failed) in outcomes.items()]
        try:
            if outcome:
                await self.store.settle_notifications(delivered, retry, [], updates)
        finally:  # settled now, or due again (and sent again) when the settling failed
            for key in outcomes:
                self.unsettled.pop(key, None)
        return len(outcome)

    def _reachable(self, groups: dict[str, Work], retry: Retries) -> dict[str, Work]:
        """The receivers' groups to send now. A receiver in an outage sends nothing: its rows wait (appended to
        `retry`) until the outage's end, when one row probes it and the rest stay due until the probe."""
        now = time.time()
        kept: dict[str, Work] = {}
        for origin, group in groups.items():
            outage = self._outages.get(origin)
            if outage is None:
                kept[origin] = group
            elif outage.until > now:
                retry.extend((row[0], outage.until, f"receiver unreachable: {outage.error}") for row, *_ in group)
            else:
                kept[origin] = group[:1]
        return kept

    def _down(self, origin: str, round_started: float) -> bool:
        """Whether a receiver failed to answer during this round (its workers stop sending)."""
        outage = self._outages.get(origin)
        return outage is not None and outage.since >= round_started

    def _lost(self, origin: str, error: str, round_started: float) -> None:
        """A receiver could not be reached: open (or extend, once per round) its outage, doubling each time."""
        outage = self._outages.get(origin)
        if outage is not None and outage.since >= round_started:
            return
        failures = outage.failures + 1 if outage is not None else 1
        now = time.time()
        self._outages[origin] = _Outage(now, now + min(MAX_BACKOFF, self.retry_base * 2 ** (failures - 1)),
                                        failures, error)

    async def _send(self, uri: str, headers: dict[str, str], body: bytes) -> tuple[str | None, bool]:
        """Deliver one notification: (None when the receiver took it, else why not; whether it answered at all)."""
        try:
            address = await endpoints.resolve(uri, self.endpoint_allow)
            if uri.startswith(("mqtt://", "mqtts://")):
                await asyncio.to_thread(_publish_mqtt, uri, body, headers, address)
                return None, True
            if uri.startswith("http://"):
                status = await self._sender.post(uri, body, headers, address=address)
            else:
                assert self._client is not None
                request = endpoints.pinned_request(self._client, uri, body, headers, address)
                status = (await self._client.send(request)).status_code
            if 200 <= status < 300:
                return None, True
            return f"HTTP {status}", True
        except Exception as exc:  # a receiver being down is routine here: retried with backoff
            return f"{type(exc).__name__}: {exc}"[:300], False


@dataclasses.dataclass
class _Outage:
    since: float  # when the receiver last failed to answer (wall clock, like the queue's due times)
    until: float  # nothing is sent to it before this
    failures: int  # rounds in a row it failed: the wait doubles with each, up to MAX_BACKOFF
    error: str


def _request(tenant: str, payload: dict[str, Any]) -> tuple[str, dict[str, str], bytes]:
    """(endpoint URI, headers, body bytes) of the request that delivers a notification."""
    endpoint, body, context = payload["endpoint"], payload["body"], payload["context"]
    headers = {e["key"]: str(e["value"]) for e in endpoint.get("receiverInfo", [])}
    if tenant:
        headers["NGSILD-Tenant"] = tenant
    if endpoint.get("accept", "application/json") == JSONLD:
        body = {**body, "data": [{**d, "@context": context} for d in body["data"]]}
        headers["Content-Type"] = JSONLD
    else:
        headers["Content-Type"] = "application/json"
        url = payload.get("link") or (context if isinstance(context, str) else CORE_CONTEXT_URL)
        headers["Link"] = f'<{url}>; rel="{CONTEXT_REL}"; type="{JSONLD}"'
    return endpoint["uri"], headers, orjson.dumps(body)


_QUEUED_V2 = b'{"v":2,'


def _queued(tenant: str, payload: dict[str, Any]) -> bytes:
    """A queue row's payload: the request, ready to send (a JSON line of URI and headers, then the body bytes),
    so delivery neither parses nor serializes the notification again."""
    uri, headers, body = _request(tenant, payload)
    return orjson.dumps({"v": 2, "uri": uri, "headers": headers}) + b"\n" + body


def _unqueued(tenant: str, raw: bytes | memoryview) -> tuple[str, dict[str, str], bytes]:
    raw = bytes(raw)
    if raw.startswith(_QUEUED_V2):
        head, _, body = raw.partition(b"\n")
        meta = orjson.loads(head)
        return meta["uri"], meta["headers"], body
    return _request(tenant, orjson.loads(raw))  # a row queued by an earlier version: the notification as JSON


def _status_change(sent: int, failed: int, stamp: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def change(sub: dict[str, Any]) -> dict[str, Any]:
        notification = sub["notification"]
        notification["timesSent"] = notification.get("timesSent", 0) + sent + failed
        if failed:
            notification["timesFailed"] = notification.get("timesFailed", 0) + failed
        notification["lastNotification"] = stamp
        if sent:
            notification["lastSuccess"] = stamp
            notification["status"] = "ok"
        if failed:
            notification["lastFailure"] = stamp
            notification["status"] = "failed"
        return sub
    return change


def _by_receiver(due: DueRows) -> dict[str, Work]:
    """Due rows with their requests, grouped by receiver (scheme, host and port), oldest first."""
    groups: dict[str, Work] = {}
    for row in due:
        uri, headers, body = _unqueued(row[1], row[3])
        groups.setdefault(_origin(uri), []).append((row, uri, headers, body))
    return groups


@lru_cache(maxsize=1024)
def _origin(uri: str) -> str:
    parts = urlparse(uri)
    return f"{parts.scheme}://{parts.netloc}"


def _publish_mqtt(uri: str, body: bytes, headers: dict[str, str], address: str | None = None) -> None:
    import paho.mqtt.publish as publish

    parts = urlparse(uri)
    topic = parts.path.lstrip("/") or "notifications"
    message = b'{"metadata":' + orjson.dumps(headers) + b',"body":' + body + b"}"
    # mqtt://user:password@host:port/topic: the credentials are the broker's login (NGSI-LD 1.8 clause 5.2.22)
    auth = {"username": parts.username, "password": parts.password} if parts.username else None
    publish.single(topic, message, qos=1, hostname=address or parts.hostname or "127.0.0.1", port=parts.port or 1883,
                   auth=auth)  # type: ignore[arg-type]
