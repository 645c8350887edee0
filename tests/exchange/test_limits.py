"""The quota and limiter building blocks on their own (no server): what the live tests cannot force."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator

import pytest

from civicmesh.errors import Problem
from civicmesh.exchange.limits import FailureLimiter, RequestRate, StreamSlots


async def _forever() -> AsyncIterator[bytes]:
    while True:
        yield b": keep-alive\n\n"
        await asyncio.sleep(0)


def test_a_stream_that_never_started_gives_its_slot_back() -> None:
    """A client that leaves before the response begins: the stream's generator never runs, so its `finally`
    never does either; the slot must come back anyway, or four such visits lock an identity out."""
    slots = StreamSlots(2)
    first = slots.held(slots.acquire("org/alice"), _forever())
    second = slots.held(slots.acquire("org/alice"), _forever())
    with pytest.raises(Problem) as refused:
        slots.acquire("org/alice")
    assert refused.value.status == 429
    assert slots.count("org/bob") == 0 and slots.acquire("org/bob") is not None  # another identity's share
    del first, second  # dropped without ever being iterated
    gc.collect()
    assert slots.count("org/alice") == 0
    assert slots.acquire("org/alice") is not None


def test_a_stream_that_ends_gives_its_slot_back() -> None:
    slots = StreamSlots(1)

    async def run() -> None:
        stream = slots.held(slots.acquire("anonymous@10.0.0.1"), _forever())
        assert await stream.__anext__() == b": keep-alive\n\n"
        assert slots.count("anonymous@10.0.0.1") == 1
        await stream.aclose()  # the client went away mid-stream

    asyncio.run(run())
    assert slots.count("anonymous@10.0.0.1") == 0


def test_request_rate_bucket_refuses_beyond_the_burst_and_refills() -> None:
    rate = RequestRate(rate=1000.0, burst=3)
    assert [rate.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = rate.take("k")
    assert 0 < wait <= 0.001
    assert rate.take("other") == 0.0
    assert RequestRate(rate=0, burst=1).take("k") == 0.0  # 0 turns it off


def test_failure_limiter_counts_per_bucket() -> None:
    limiter = FailureLimiter(limit=2, window=60)
    assert limiter.fail("key a") == 1 and limiter.fail("key a") == 2
    assert limiter.blocked("key a") >= 1 and limiter.blocked("address 10.0.0.1") == 0
