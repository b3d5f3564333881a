"""The schedule: one task per target on a shared grid, a budget so failing targets cannot starve
healthy ones, backoff when told to, and a fleet that can be changed while it runs.

Each poll ends as a success or as one error reason, written to the store as a new snapshot. A
target's data is withdrawn by a timer once its last success is older than the stale-after age,
so stale numbers never pass for fresh ones even while polls are backing off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

import aiohttp

from whatsapp_support_exporter.fleet.settings import Settings
from whatsapp_support_exporter.output.families import OPTIONAL_ENDPOINTS
from whatsapp_support_exporter.output.snapshot import EndpointState, TargetSnapshot, bumped
from whatsapp_support_exporter.output.store import Store
from whatsapp_support_exporter.upstream.errors import BACKOFF_REASONS, PollError, Reason
from whatsapp_support_exporter.upstream.onprem.client import Answer, Client, new_session
from whatsapp_support_exporter.upstream.onprem.target import Target, TLSOptions

log = logging.getLogger("whatsapp_support_exporter.fleet.poller")

# Polls start on a shared grid of this many seconds (or an eighth of the interval if shorter):
# the polls of a fleet that fall due together then share one wake-up of the process, and their
# answers mostly one turn of the event loop. On a virtual machine a wake-up from idle costs more
# CPU than a poll's own work (see docs/benchmarks.md).
POLL_TICK = 0.25
# A poll holds a slot of the shared budget at most this long; a slower one goes on outside it
# (still bounded by its own deadline), so hanging upstreams cannot hold the slots of healthy ones.
SLOT_HOLD_SECONDS = 1.0
# /v1/account/shards is asked on the first poll and then every this many polls.
SHARDS_EVERY = 10
# A fleet's first polls are spread over this many seconds per target (at most a second, at most
# an interval): a thousand targets start within a second, a lone target (a sidecar) at once.
START_SPREAD_PER_TARGET = 0.001
# One generator for every target's jitter: a Random holds 2.5 KB of state, and one per target
# was an eighth of the memory a fleet takes (docs/benchmarks-fleet.md).
_JITTER = random.Random()


def _https(url: str) -> bool:
    return url[:6].lower() == "https:"


def tick_for(interval: float) -> float:
    return min(POLL_TICK, interval / 8)


def start_spread(targets: int, interval: float) -> float:
    """Seconds over which the first polls of this many new targets are spread."""
    return min(1.0, interval, max(targets - 1, 0) * START_SPREAD_PER_TARGET)


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


def ssl_for(options: TLSOptions) -> ssl.SSLContext | bool:
    """The TLS policy of a target: its CA file, the system store, or no verification."""
    if not options.verify:
        log.warning("TLS certificate verification of an upstream is off")
        return False
    return ssl.create_default_context(cafile=str(options.ca_file) if options.ca_file else None)


class TargetPoller:
    """Polls one target until stopped; its state is its current snapshot in the store."""

    def __init__(
        self,
        target: Target,
        session: aiohttp.ClientSession,
        store: Store,
        settings: Settings,
        budget: Budget,
        *,
        ssl_context: ssl.SSLContext | bool = True,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        spread: float = 0.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.target = target
        self.store = store
        self.settings = settings
        self.budget = budget
        self.clock = clock
        self.rng = rng or _JITTER
        self.spread = spread  # the first poll comes within this many seconds of start
        self.sleep = sleep
        self.client = Client(
            session,
            target,
            timeout=settings.poll_timeout,
            max_response_bytes=settings.max_response_bytes,
            max_series=settings.max_series,
            ssl_context=ssl_context,
            clock=clock,
        )
        self.snapshot = TargetSnapshot(
            name=target.name,
            url=target.url,
            labels=target.labels,
            with_logins=target.credentials.can_login,
        )
        self.failures = 0
        self._stale_timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None
        self.stopped = False
        self._publish(self.snapshot)

    def _publish(self, snapshot: TargetSnapshot) -> None:
        self.snapshot = snapshot
        if not self.stopped:  # a removed target must not come back
            self.store.update(snapshot)

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name=f"poll {self.target.name}")

    async def run(self) -> None:
        """Poll until cancelled: first within the spread (at once without one), then every
        interval (or backoff) on the shared grid."""
        loop = asyncio.get_running_loop()
        tick = tick_for(self.settings.poll_interval)
        if self.spread > 0:
            await self.sleep(on_tick(loop.time(), self.rng.uniform(0, self.spread), tick))
        while True:
            started = loop.time()
            try:
                delay = await self.poll_once()
            except Exception:  # a bug in the bookkeeping costs one poll, not the target's task
                log.exception("poll crashed", extra={"target": self.target.name})
                delay = self.settings.poll_interval
            await self.sleep(on_tick(loop.time(), max(delay - (loop.time() - started), 0.0), tick))

    async def poll_once(self) -> float:
        """One poll; returns the seconds until the next one should start."""
        started = time.monotonic()
        wants_shards = (
            self.settings.collector_shards
            and (self.snapshot.support is None or self._multiconnect())  # the client checks
            and self.snapshot.polls % SHARDS_EVERY == 0
        )
        try:
            answer = await self._attempt(wants_shards)
        except PollError as err:
            return self._failed(err, time.monotonic() - started)
        except Exception as err:  # a bug or a MemoryError costs this poll, counted, not the task
            error = PollError(Reason.INTERNAL, f"the exporter failed ({type(err).__name__})")
            return self._failed(error, time.monotonic() - started, err)
        return self._succeeded(answer, time.monotonic() - started)

    async def _attempt(self, wants_shards: bool) -> Answer:
        """The client's attempt, holding a budget slot at most SLOT_HOLD_SECONDS.

        The slot is given back by a timer or when the attempt ends, whichever comes first: no
        extra task per poll, and a hanging upstream keeps its slot for a second, not its timeout.
        """
        slots = self.budget.pool(failing=not self.snapshot.up and self.snapshot.polls > 0)
        await slots.acquire()
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                slots.release()

        timer = asyncio.get_running_loop().call_later(SLOT_HOLD_SECONDS, release)
        try:
            return await self.client.attempt(
                health=self.settings.collector_health, shards=wants_shards
            )
        finally:
            timer.cancel()
            release()

    def _multiconnect(self) -> bool:
        support = self.snapshot.support
        return support is not None and any(c.fields.multi_connect for c in support.containers)

    def _succeeded(self, answer: Answer, duration: float) -> float:
        snap = self.snapshot
        if not snap.up:
            log.info("target is up", extra={"target": snap.name})
        invalid = snap.invalid_fields
        for name in answer.support.invalid_fields:
            invalid = bumped(invalid, name)
        if answer.support.invalid_fields:
            log.debug(
                "dropped upstream fields of the wrong type",
                extra={
                    "target": snap.name,
                    "fields": ",".join(sorted(set(answer.support.invalid_fields))),
                },
            )
        endpoints = dict(snap.endpoints)
        health, shards = snap.health, snap.shards_configured
        asked = dict(answer.endpoints)
        if "health" in asked:
            health = answer.health
        elif not self.settings.collector_health:
            health = None
        if "shards" in asked:
            shards = answer.shards_configured
        for name in OPTIONAL_ENDPOINTS:
            if name not in asked:
                continue
            error = asked[name]
            state = endpoints.get(name, EndpointState())
            if error is None:
                endpoints[name] = replace(state, success=True)
            else:
                if state.success or name not in snap.endpoints:
                    log.info(
                        "optional endpoint failed",
                        extra={
                            "target": snap.name,
                            "collector": name,
                            "reason": error.reason,
                            "detail": error.detail,
                        },
                    )
                endpoints[name] = EndpointState(False, bumped(state.errors, error.reason))
        self.failures = 0
        self._arm_stale_timer()
        self._publish(
            replace(
                snap,
                polls=snap.polls + 1,
                up=True,
                logins=self.client.logins,
                support=answer.support,
                health=health,
                shards_configured=shards,
                received_at=answer.received_at,
                last_success=answer.received_at,
                last_duration=duration,
                last_error=None,
                last_error_detail="",
                invalid_fields=invalid,
                endpoints=endpoints,
            )
        )
        return self._jittered(self.settings.poll_interval)

    def _failed(self, err: PollError, duration: float, cause: BaseException | None = None) -> float:
        """Count the failure; log it when the target's state changes (an internal one with its
        traceback, at error level: it is ours to fix)."""
        snap = self.snapshot
        if snap.up or snap.last_error != err.reason:
            extra = {"target": snap.name, "reason": err.reason, "detail": err.detail}
            if cause is not None:
                log.error("poll failed inside the exporter", exc_info=cause, extra=extra)
            else:
                log.warning("target poll failed", extra=extra)
        self._publish(
            replace(
                snap,
                polls=snap.polls + 1,
                up=False,
                logins=self.client.logins,
                last_duration=duration,
                errors=bumped(snap.errors, err.reason),
                last_error=err.reason,
                last_error_detail=err.detail,
            )
        )
        return self._next_delay(err)

    def _next_delay(self, err: PollError) -> float:
        """Back off when the reason says so; never past max-backoff, whatever Retry-After says."""
        interval = self.settings.poll_interval
        if err.reason not in BACKOFF_REASONS:
            self.failures = 0
            return self._jittered(interval)
        self.failures += 1
        longest = max(self.settings.max_backoff, interval)
        delay = min(interval * 2 ** min(self.failures - 1, 32), longest)
        delay = self.rng.uniform(delay / 2, delay) if self.failures > 1 else delay
        if err.retry_after is not None:
            delay = max(delay, err.retry_after)
        return min(delay, longest)

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
            self._publish(replace(self.snapshot, support=None, health=None, shards_configured=None))

    async def stop(self) -> None:
        """Stop polling and let go of the task and the timer: both refer back to this poller
        (a finished task keeps its last frame), and nothing may hold a removed target."""
        self.stopped = True
        if self._stale_timer is not None:
            self._stale_timer.cancel()
            self._stale_timer = None
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class Poller:
    """The polling of this replica's targets: one shared session, one budget, one poller per
    target; changed by ``apply`` (the fleet, ``fleet.reload``, decides which targets)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        targets: list[Target],
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.sleep = sleep  # how the pollers wait (tests drive it)
        self.store = store
        self.targets = targets
        self.session: aiohttp.ClientSession | None = None
        self.budget: Budget | None = None
        self.pollers: dict[str, TargetPoller] = {}
        self._ssl: dict[TLSOptions, ssl.SSLContext | bool] = {}

    async def start(self) -> None:
        interval = self.settings.poll_interval
        self.session = new_session(self.settings.max_concurrency * 4, min(interval + 5.0, 75.0))
        self.budget = Budget(self.settings.max_concurrency)
        await self.apply(self.targets)

    def _ssl_for(self, options: TLSOptions) -> ssl.SSLContext | bool:
        context = self._ssl.get(options)
        if context is None:
            context = self._ssl[options] = ssl_for(options)
        return context

    async def apply(self, targets: list[Target]) -> tuple[int, int, int]:
        """Make the fleet these targets: unchanged ones keep their poller (counters, token,
        connection); changed ones restart; removed ones stop and their series go; new ones start.
        Returns (added, changed, removed)."""
        assert self.session is not None and self.budget is not None
        wanted = {t.name: t for t in targets}
        removed = [name for name in self.pollers if name not in wanted]
        changed = [
            n for n, t in wanted.items() if n in self.pollers and self.pollers[n].target != t
        ]
        for name in removed + changed:
            await self.pollers.pop(name).stop()
            self.store.delete(name)
        # TLS contexts no target uses any more go (a context holds its CA store)
        in_use = {t.tls for t in targets}
        self._ssl = {options: ctx for options, ctx in self._ssl.items() if options in in_use}
        new = [t for name, t in wanted.items() if name not in self.pollers]
        spread = start_spread(len(new), self.settings.poll_interval)
        for target in new:
            poller = TargetPoller(
                target,
                self.session,
                self.store,
                self.settings,
                self.budget,
                # a plain-HTTP target needs no TLS context (loading the CA store costs 0.8 MiB)
                ssl_context=self._ssl_for(target.tls) if _https(target.url) else True,
                spread=spread,
                sleep=self.sleep,
            )
            self.pollers[target.name] = poller
            poller.start()
        self.targets = targets
        added = len(new) - len(changed)
        return added, len(changed), len(removed)

    async def stop(self) -> None:
        """Cancel polls in flight and close the session."""
        await asyncio.gather(*(p.stop() for p in self.pollers.values()), return_exceptions=True)
        if self.session is not None:
            await self.session.close()
