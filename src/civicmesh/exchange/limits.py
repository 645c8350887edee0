"""How much a caller may ask: failed-authentication limits, request rates, and quotas on what a caller holds.

Counters are in memory, per process: with several workers each enforces its own share (a limit of 50 requests a
second on four workers admits up to 200 across them), which bounds abuse without a shared store on the hot path.
"""

from __future__ import annotations

import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from civicmesh.errors import Problem

# Forget idle counters beyond this many, rather than grow without bound under a spray of distinct credentials.
MAX_TRACKED = 50_000
# Seconds between checks that an open stream's API key is still valid (one key read each).
CREDENTIAL_RECHECK = 5.0


class FailureLimiter:
    """At most `limit` failed authentications per bucket per `window` seconds.

    A bucket is the key id a failing credential names when that key exists (so guessing one key's secret is
    slowed for that key only), else the client address (sprays of unknown keys and bad tokens). A credential that
    verifies is never refused here: an attacker failing on someone's key id or from a shared address cannot lock
    its owner out. Secrets carry 256 bits, so guessing one is hopeless anyway; the limit stops the noise and load.
    """

    def __init__(self, limit: int = 20, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, bucket: str) -> deque[float]:
        q = self._failures.setdefault(bucket, deque())
        cutoff = time.monotonic() - self.window
        while q and q[0] < cutoff:
            q.popleft()
        return q

    def blocked(self, bucket: str) -> float:
        """Seconds until this bucket may fail again, or 0."""
        q = self._recent(bucket)
        if len(q) < self.limit:
            return 0.0
        return max(1.0, q[0] + self.window - time.monotonic())

    def fail(self, bucket: str) -> int:
        """Count one failure; return how many the bucket has in the window."""
        q = self._recent(bucket)
        q.append(time.monotonic())
        if len(self._failures) > MAX_TRACKED:
            for name in [k for k, v in self._failures.items() if not v][:10_000]:
                del self._failures[name]
        return len(q)


class RequestRate:
    """A token bucket per credential: `rate` requests a second on average, bursts of up to `burst`."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._buckets: dict[str, tuple[float, float]] = {}  # credential -> (tokens, when counted)

    def take(self, credential: str) -> float:
        """Spend one request; return 0, or the seconds to wait when the bucket is empty (nothing spent)."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        tokens, then = self._buckets.get(credential, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        if tokens < 1.0:
            self._buckets[credential] = (tokens, now)
            return (1.0 - tokens) / self.rate
        self._buckets[credential] = (tokens - 1.0, now)
        if len(self._buckets) > MAX_TRACKED:  # full buckets hold no information: drop them
            full = [k for k, (t, w) in self._buckets.items() if t + (now - w) * self.rate >= self.burst]
            for name in full[:10_000]:
                del self._buckets[name]
        return 0.0


def credential_of(caller: Any) -> str:
    """What a request rate is counted against: the API key id or token id, else the subject in its organization."""
    return str(getattr(caller, "credential", None) or f"{caller.organization}/{caller.subject}")


def _unlimited(caller: Any) -> bool:
    return "platform_admin" in getattr(caller, "roles", ())


def check_subscriptions(caller: Any, subscriptions: Iterable[dict[str, Any]], limit: int) -> None:
    """Refuse a new subscription when the caller's organization already holds `limit` (platform admins: no limit)."""
    if _unlimited(caller):
        return
    held = sum(1 for s in subscriptions if (s.get("_owner") or {}).get("organization") == caller.organization)
    if held >= limit:
        raise Problem("Forbidden", f"organization {caller.organization} holds {held} subscriptions; the limit is "
                      f"{limit} (CIVICMESH_MAX_SUBSCRIPTIONS_PER_ORG): delete some first")


def check_batch(caller: Any, size: int, limit: int) -> None:
    """Refuse a batch operation of more than `limit` entities from a caller that is not a platform admin."""
    if size > limit and not _unlimited(caller):
        raise Problem("BadRequestData", f"the batch has {size} entities; the limit is {limit} "
                      "(CIVICMESH_MAX_BATCH_ENTITIES): split it")


class Slot:
    """One open stream's place in its identity's share; alive as long as the stream that holds it."""

    __slots__ = ("identity", "__weakref__")

    def __init__(self, identity: str) -> None:
        self.identity = identity


class StreamSlots:
    """Open live streams per identity: at most `limit` at once.

    A slot is given back when its stream ends, and also when a stream that never started is dropped (the client
    left before the response began: an async generator that never ran never reaches its `finally`), because the
    slots are held weakly and only the stream refers to its slot."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[str, weakref.WeakSet[Slot]] = {}

    def count(self, identity: str) -> int:
        return len(self.open.get(identity, ()))

    def acquire(self, identity: str) -> Slot:
        if len(self.open) > MAX_TRACKED:  # identities whose streams all ended leave empty sets behind
            for name in [k for k, v in self.open.items() if not v]:
                del self.open[name]
        slots = self.open.setdefault(identity, weakref.WeakSet())
        if len(slots) >= self.limit:
            raise Problem("TooManyRequests", f"{identity} already has {len(slots)} live streams open; the limit "
                          f"is {self.limit} (CIVICMESH_MAX_SSE_PER_IDENTITY): close one first", status=429,
                          title="Too many requests")
        slot = Slot(identity)
        slots.add(slot)
        return slot

    def release(self, slot: Slot) -> None:
        slots = self.open.get(slot.identity)
        if slots is not None:
            slots.discard(slot)
            if not slots:
                del self.open[slot.identity]

    async def held(self, slot: Slot, stream: AsyncIterator[bytes],
                   live: Callable[[], Awaitable[bool]] | None = None) -> AsyncIterator[bytes]:
        """The stream, with its slot given back however it ends (client gone, server stopping). With `live`, the
        credential is checked again at most every CREDENTIAL_RECHECK seconds as chunks pass (a keep-alive at
        least every 15 s), and the stream ends with a `revoked` event once it fails: a revoked key does not keep
        an open stream."""
        checked = time.monotonic()
        try:
            async for chunk in stream:
                if live is not None and time.monotonic() - checked >= CREDENTIAL_RECHECK:
                    checked = time.monotonic()
                    if not await live():
                        yield b'event: revoked\ndata: {"detail": "the credential of this stream was revoked or ' \
                              b'expired"}\n\n'
                        return
                yield chunk
        finally:
            self.release(slot)


def credential_check(gate: Any, caller: Any) -> Callable[[], Awaitable[bool]] | None:
    """For a long-lived connection: a check that the caller's API key still holds, or None without an exchange."""
    exchange = getattr(gate, "exchange", None)
    if exchange is None or getattr(caller, "via", None) != "api-key":
        return None
    return lambda: exchange.credential_live(caller)


def stream_identity(caller: Any, client: str) -> str:
    """Who holds a live stream: a signed-in caller, or an anonymous page by its address."""
    if getattr(caller, "organization", None) is None and getattr(caller, "subject", "anonymous") == "anonymous":
        return f"anonymous@{client}"
    return f"{caller.organization}/{caller.subject}"
