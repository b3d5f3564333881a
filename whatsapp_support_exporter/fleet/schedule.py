"""What every polled thing shares, an On-Premises target or a Cloud API account: the grid its
polls start on, the budget slot a poll holds, backoff, and the timer that withdraws stale data.

A :class:`Scheduled` knows nothing of its upstream: a subclass says what one poll is
(``poll_once``), what to withdraw (``withdraw``), its interval and stale-after age.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from whatsapp_support_exporter.fleet.settings import Settings
from whatsapp_support_exporter.upstream.errors import BACKOFF_REASONS, PollError, Reason

log = logging.getLogger("whatsapp_support_exporter.fleet.poller")

# Polls start on a shared grid of this many seconds (or an eighth of the interval if shorter):
# the polls of a fleet that fall due together then share one wake-up of the process, and their
# answers mostly one turn of the event loop. On a virtual machine a wake-up from idle costs more
# CPU than a poll's own work (see docs/benchmarks.md).
POLL_TICK = 0.25
# A poll holds a slot of the shared budget at most this long; a slower one goes on outside it
# (still bounded by its own deadline), so hanging upstreams cannot hold the slots of healthy ones.
SLOT_HOLD_SECONDS = 1.0
# A fleet's first polls are spread over this many seconds per poller started (at most a second,
# at most an interval): a thousand targets start within a second, a lone one (a sidecar) at once.
START_SPREAD_PER_TARGET = 0.001
# One generator for every target's jitter: a Random holds 2.5 KB of state, and one per target
# was an eighth of the memory a fleet takes (docs/benchmarks-fleet.md).
_JITTER = random.Random()
T = TypeVar("T")
A = TypeVar("A")  # what one attempt of the upstream answers


def tick_for(interval: float) -> float:
    return min(POLL_TICK, interval / 8)


def start_spread(started: int, interval: float) -> float:
    """Seconds over which the first polls of this many pollers started together are spread."""
    return min(1.0, interval, max(started - 1, 0) * START_SPREAD_PER_TARGET)


def on_tick(now: float, delay: float, tick: float) -> float:
    """The delay from ``now`` to the first grid point at least ``delay`` away."""
    return math.ceil((now + delay) / tick) * tick - now


class Budget:
    """Polls in flight: healthy targets share ``size`` slots; failing ones a quarter of them."""

    def __init__(self, size: int) -> None:
        self.healthy = asyncio.Semaphore(size)
        self.failing = asyncio.Semaphore(max(1, size // 4))

    def pool(self, failing: bool) -> asyncio.Semaphore:
        return self.failing if failing else self.healthy


class Scheduled(Generic[A]):
    """One thing polled until stopped, on the shared grid and within the shared budget."""

    name: str
    kind = "target"  # the log field naming it: target or account

    def __init__(
        self, settings: Settings, budget: Budget, rng: random.Random | None = None
    ) -> None:
        self.settings = settings
        self.budget = budget
        self.rng = rng or _JITTER
        self.failures = 0
        self._stale_timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None
        self.stopped = False
        # the first poll comes within this many seconds of start (see start_spread)
        self.spread = 0.0
        # how the schedule waits: asyncio.sleep (tests drive it with a fake clock)
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    @property
    def interval(self) -> float:
        raise NotImplementedError

    @property
    def stale_after(self) -> float:
        raise NotImplementedError

    @property
    def failing(self) -> bool:
        """The last poll failed: the next one takes a slot of the failing pool."""
        raise NotImplementedError

    async def attempt(self) -> A:
        """One attempt of the upstream, within a slot of the budget (``in_slot``)."""
        raise NotImplementedError

    def succeeded(self, answer: A, duration: float) -> float:
        """Publish the answer; returns the seconds until the next poll."""
        raise NotImplementedError

    def failed(self, err: PollError, duration: float, cause: BaseException | None = None) -> float:
        """Count the failure (``cause``: our own exception); returns the seconds until the next
        poll."""
        raise NotImplementedError

    async def poll_once(self) -> float:
        """One poll: an attempt that ends in success or one reason, ``internal`` for our bugs."""
        started = time.monotonic()
        try:
            answer = await self.attempt()
        except PollError as err:
            return self.failed(err, time.monotonic() - started)
        except Exception as err:  # a bug or a MemoryError costs this poll, counted, not the task
            error = PollError(Reason.INTERNAL, f"the exporter failed ({type(err).__name__})")
            return self.failed(error, time.monotonic() - started, err)
        return self.succeeded(answer, time.monotonic() - started)

    def withdraw(self) -> None:
        """The last success is too old: stop serving its data, keep the poll series."""
        raise NotImplementedError

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name=f"poll {self.name}")

    async def run(self) -> None:
        """Poll until cancelled: first within the spread (at once without one), then every
        interval (or backoff) on the shared grid."""
        loop = asyncio.get_running_loop()
        interval = self.interval
        tick = tick_for(interval)
        if self.spread > 0:
            await self.sleep(on_tick(loop.time(), self.rng.uniform(0, self.spread), tick))
        while True:
            started = loop.time()
            try:
                delay = await self.poll_once()
            except Exception:  # a bug in the bookkeeping costs one poll, not the task
                log.exception("poll crashed", extra={self.kind: self.name})
                delay = interval
            await self.sleep(on_tick(loop.time(), max(delay - (loop.time() - started), 0.0), tick))

    async def in_slot(self, work: Callable[[], Awaitable[T]]) -> T:
        """An attempt, started once it holds a budget slot; held at most SLOT_HOLD_SECONDS.

        The slot is given back by a timer or when the attempt ends, whichever comes first: no
        extra task per poll, and a hanging upstream keeps its slot for a second, not its timeout.
        """
        slots = self.budget.pool(failing=self.failing)
        await slots.acquire()
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                slots.release()

        timer = asyncio.get_running_loop().call_later(SLOT_HOLD_SECONDS, release)
        try:
            return await work()
        finally:
            timer.cancel()
            release()

    def next_delay(self, err: PollError) -> float:
        """Back off when the reason says so; never past max-backoff, whatever the upstream
        asks (Retry-After, the Graph API's time to regain access)."""
        interval = self.interval
        if err.reason not in BACKOFF_REASONS:
            self.failures = 0
            return self.jittered(interval)
        self.failures += 1
        longest = max(self.settings.max_backoff, interval)
        delay = min(interval * 2 ** min(self.failures - 1, 32), longest)
        delay = self.rng.uniform(delay / 2, delay) if self.failures > 1 else delay
        if err.retry_after is not None:
            delay = max(delay, err.retry_after)
        return min(delay, longest)

    def jittered(self, interval: float) -> float:
        """Spread polls over the interval so a fleet does not poll in lockstep."""
        return interval * self.rng.uniform(0.95, 1.05)

    def arm_stale_timer(self) -> None:
        if self._stale_timer is not None:
            self._stale_timer.cancel()
        loop = asyncio.get_running_loop()
        self._stale_timer = loop.call_later(self.stale_after, self._stale)

    def _stale(self) -> None:
        self._stale_timer = None
        self.withdraw()

    async def stop(self) -> None:
        """Stop polling and let go of the task and the timer: both refer back to this poller
        (a finished task keeps its last frame), and nothing may hold what a reload removed."""
        self.stopped = True
        if self._stale_timer is not None:
            self._stale_timer.cancel()
            self._stale_timer = None
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
