"""Background tasks with a start and a stop: a `Worker` runs one coroutine, a `Periodic` repeats a step."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("civicmesh.workers")

Step = Callable[[], Coroutine[Any, Any, None]]


class Worker:
    """One named asyncio task. `start` is idempotent; `stop` cancels it and waits until it has ended, so nothing
    it does can outlive the resources (store, pools) closed after it."""

    def __init__(self, name: str, run: Step) -> None:
        self.name = name
        self._run = run
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        # Cancel until it has ended: on Python 3.11 `asyncio.wait_for` can swallow a cancellation that arrives as
        # its inner wait completes (the relay and the delivery loop wait that way), and a single cancel then left
        # `stop` waiting forever on a loop that kept running — a child of the citizen crash test hung in shutdown.
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
        # A task that already failed has logged nothing yet: its error is logged here, at the latest, not lost.
        with contextlib.suppress(asyncio.CancelledError):
            try:
                task.result()
            except Exception:
                log.exception("background task %s had failed", self.name)


class Periodic(Worker):
    """Runs `step` every `interval` seconds until stopped. A step that fails is logged and the next one runs on
    time, so one bad round (a database blip) never ends the work for good. `setup` runs once before the first
    step (a failure there ends the worker, logged); `wait_first` waits one interval before the first step."""

    def __init__(self, name: str, step: Step, interval: float, *, setup: Step | None = None,
                 wait_first: bool = False) -> None:
        super().__init__(name, self._loop)
        self.step = step
        self.interval = interval
        self._setup = setup
        self._wait_first = wait_first

    async def _loop(self) -> None:
        if self._setup is not None:
            try:
                await self._setup()
            except Exception:
                log.exception("%s could not start", self.name)
                return
        if self._wait_first:
            await asyncio.sleep(self.interval)
        while True:
            try:
                await self.step()
            except Exception:
                log.exception("%s failed; next round in %.1f s", self.name, self.interval)
            await asyncio.sleep(self.interval)
