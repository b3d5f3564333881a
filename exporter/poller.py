"""The schedule: one task per target, jittered, capped in concurrency, backing off when told to.

Each poll ends as a success or as one error reason, written to the snapshot store. A target's
data is withdrawn by a timer once its last success is older than the stale-after age, so stale
numbers never pass for fresh ones even while polls are backing off.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable

import aiohttp

from exporter.client import Credentials, PollError, SupportClient, new_session
from exporter.settings import Settings, Target
from exporter.store import SnapshotStore, TargetSnapshot
from exporter.support import InvalidResponse, parse_support

log = logging.getLogger("exporter.poller")

# Reasons that say "slow down": the next poll waits longer each time, up to max_backoff.
BACKOFF_REASONS = frozenset({"rate_limited", "unavailable", "timeout", "connect", "auth"})


# Polls start on a shared grid of this many seconds (or an eighth of the interval if shorter):
# the polls of a fleet that fall due together then share one wake-up of the process, and their
# answers mostly one turn of the event loop. On a virtual machine a wake-up from idle costs more
# CPU than a poll's own work (see docs/benchmarks.md).
POLL_TICK = 0.25


def tick_for(interval: float) -> float:
    return min(POLL_TICK, interval / 8)


def on_tick(now: float, delay: float, tick: float) -> float:
    """The delay from ``now`` to the first grid point at least ``delay`` away."""
    return math.ceil((now + delay) / tick) * tick - now


class TargetPoller:
    """Polls one target forever; all its state lives in its snapshot."""

    def __init__(
        self,
        client: SupportClient,
        store: SnapshotStore,
        settings: Settings,
        semaphore: asyncio.Semaphore,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.settings = settings
        self.semaphore = semaphore
        self.clock = clock
        self.rng = rng or random.Random()
        self.snapshot = TargetSnapshot(name=client.target.name, url=client.target.url)
        self.failures = 0
        self._stale_timer: asyncio.TimerHandle | None = None
        client.on_login = self._count_login
        store.publish(self.snapshot)

    def _count_login(self, result: str) -> None:
        self.snapshot.logins[result] += 1

    async def run(self) -> None:
        """Poll until cancelled: first soon after start, then every interval (or backoff)."""
        loop = asyncio.get_running_loop()
        tick = tick_for(self.settings.poll_interval)
        first = self.rng.uniform(0, min(self.settings.poll_interval, 1.0))
        await asyncio.sleep(on_tick(loop.time(), first, tick))
        while True:
            started = loop.time()
            try:
                delay = await self.poll_once()
            except Exception:
                # a bug must cost one poll, not the target's task for the rest of the process
                log.exception("poll crashed", extra={"target": self.snapshot.name})
                delay = self.settings.poll_interval
            await asyncio.sleep(
                on_tick(loop.time(), max(delay - (loop.time() - started), 0.0), tick)
            )

    async def poll_once(self) -> float:
        """One poll; returns the seconds until the next one should start."""
        async with self.semaphore:
            started = time.monotonic()
            try:
                async with asyncio.timeout(self.settings.poll_timeout):
                    body = await self.client.fetch_support()
                received_at = self.clock()
                support = parse_support(body)
            except PollError as err:
                return self._failed(err, time.monotonic() - started)
            except InvalidResponse as err:
                return self._failed(
                    PollError("invalid_response", str(err)), time.monotonic() - started
                )
            except TimeoutError:
                error = PollError("timeout", f"no answer within {self.settings.poll_timeout:g}s")
                return self._failed(error, time.monotonic() - started)
            except aiohttp.ClientError as err:  # anything the client did not classify
                return self._failed(
                    PollError("connect", err.__class__.__name__), time.monotonic() - started
                )
        snap = self.snapshot
        if not snap.up:
            log.info("target is up", extra={"target": snap.name})
        snap.polls += 1
        snap.up = True
        snap.support = support
        snap.received_at = received_at
        snap.last_success = received_at
        snap.last_duration = time.monotonic() - started
        snap.last_error = None
        snap.last_error_detail = ""
        snap.invalid_fields.update(support.invalid_fields)
        if support.invalid_fields:
            log.debug(
                "dropped upstream fields of the wrong type",
                extra={
                    "target": snap.name,
                    "fields": ",".join(sorted(set(support.invalid_fields))),
                },
            )
        self.failures = 0
        self._arm_stale_timer()
        self.store.publish(snap)
        return self._jittered(self.settings.poll_interval)

    def _failed(self, err: PollError, duration: float) -> float:
        snap = self.snapshot
        if snap.up or snap.last_error != err.reason:
            log.warning(
                "target poll failed",
                extra={"target": snap.name, "reason": err.reason, "detail": err.detail},
            )
        snap.polls += 1
        snap.up = False
        snap.last_duration = duration
        snap.errors[err.reason] += 1
        snap.last_error = err.reason
        snap.last_error_detail = err.detail
        self.store.publish(snap)
        return self._next_delay(err)

    def _next_delay(self, err: PollError) -> float:
        interval = self.settings.poll_interval
        if err.reason not in BACKOFF_REASONS:
            self.failures = 0
            return self._jittered(interval)
        self.failures += 1
        delay = min(interval * 2 ** (self.failures - 1), max(self.settings.max_backoff, interval))
        delay = self.rng.uniform(delay / 2, delay) if self.failures > 1 else delay
        if err.retry_after is not None:
            delay = max(delay, err.retry_after)
        return delay

    def _jittered(self, interval: float) -> float:
        """Spread targets over the interval so a fleet does not poll in lockstep."""
        return interval * self.rng.uniform(0.95, 1.05)

    def _arm_stale_timer(self) -> None:
        if self._stale_timer is not None:
            self._stale_timer.cancel()
        loop = asyncio.get_running_loop()
        self._stale_timer = loop.call_later(self.settings.stale_after_seconds, self._withdraw)

    def _withdraw(self) -> None:
        """The last success is too old: stop serving its data, keep the poll series."""
        self._stale_timer = None
        if self.snapshot.support is not None:
            log.info("data is stale, withdrawn", extra={"target": self.snapshot.name})
            self.snapshot.support = None
            self.store.publish(self.snapshot)

    def stop(self) -> None:
        if self._stale_timer is not None:
            self._stale_timer.cancel()


class Poller:
    """All targets: one shared session, one concurrency cap, one task per target."""

    def __init__(self, settings: Settings, store: SnapshotStore, targets: list[Target]) -> None:
        self.settings = settings
        self.store = store
        self.targets = targets
        self.session: aiohttp.ClientSession | None = None
        self.pollers: list[TargetPoller] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self.session = new_session(self.settings)
        semaphore = asyncio.Semaphore(self.settings.max_concurrency)
        credentials = Credentials.from_settings(self.settings)
        for target in self.targets:
            client = SupportClient(
                self.session,
                target,
                credentials,
                max_response_bytes=self.settings.max_response_bytes,
            )
            poller = TargetPoller(client, self.store, self.settings, semaphore)
            self.pollers.append(poller)
            self.tasks.append(asyncio.create_task(poller.run(), name=f"poll {target.name}"))

    async def stop(self) -> None:
        """Cancel polls in flight and close the session."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for poller in self.pollers:
            poller.stop()
        if self.session is not None:
            await self.session.close()
