"""Background workers: a failing round does not end a Periodic, and stop() leaves no task behind."""

from __future__ import annotations

import asyncio

import pytest

from civicmesh.workers import Periodic, Worker


def test_a_periodic_keeps_its_rhythm_through_a_failing_round_and_stops_cleanly(
        caplog: pytest.LogCaptureFixture) -> None:
    rounds: list[int] = []

    async def step() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 2:
            raise ValueError("the database blinked")

    async def run() -> None:
        worker = Periodic("test-rounds", step, 0.01)
        worker.start()
        worker.start()  # a second start does not start a second loop
        while len(rounds) < 5:
            await asyncio.sleep(0.01)
        await worker.stop()
        assert not worker.running
        stopped_at = len(rounds)
        await asyncio.sleep(0.05)
        assert len(rounds) == stopped_at, "the worker ran after stop()"
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []

    asyncio.run(run())
    assert rounds[:5] == [0, 1, 2, 3, 4]
    assert "test-rounds failed; next round in 0.0 s" in caplog.text
    assert "the database blinked" in caplog.text


def test_setup_runs_once_before_the_first_round_and_wait_first_delays_it() -> None:
    events: list[str] = []

    async def setup() -> None:
        events.append("setup")

    async def step() -> None:
        events.append("round")

    async def run() -> None:
        worker = Periodic("test-setup", step, 0.2, setup=setup, wait_first=True)
        worker.start()
        await asyncio.sleep(0.05)
        assert events == ["setup"], "the first round ran before its interval"
        while events.count("round") < 2:
            await asyncio.sleep(0.02)
        await worker.stop()

    asyncio.run(run())
    assert events[:3] == ["setup", "round", "round"]


def test_stop_logs_what_a_worker_died_of(caplog: pytest.LogCaptureFixture) -> None:
    async def crash() -> None:
        raise RuntimeError("the writer lost its connection")

    async def run() -> None:
        worker = Worker("test-crash", crash)
        worker.start()
        await asyncio.sleep(0.01)
        assert not worker.running
        await worker.stop()
        await worker.stop()  # stopping twice is harmless

    asyncio.run(run())
    assert "background task test-crash had failed" in caplog.text
    assert "the writer lost its connection" in caplog.text


def test_stop_ends_a_task_that_swallowed_the_first_cancellation() -> None:
    # What Python 3.11's asyncio.wait_for does when a cancellation arrives as its inner wait completes: the
    # CancelledError is lost and the loop goes on. stop() must still end the task, not wait for it forever.
    swallowed: list[bool] = []

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed.append(True)

    async def run() -> None:
        worker = Worker("test-stubborn", stubborn)
        worker.start()
        await asyncio.sleep(0.02)
        stopping = asyncio.ensure_future(worker.stop())
        await asyncio.wait({stopping}, timeout=10)  # unlike wait_for, does not cancel `stop` itself on time-out
        assert stopping.done(), "stop() still waits for a task that swallowed one cancellation"
        assert not worker.running

    asyncio.run(run())
    assert swallowed == [True]
