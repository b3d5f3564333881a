"""The schedule: one task per target on a shared grid, a budget so failing targets cannot starve
healthy ones, backoff when told to, and a fleet that can be changed while it runs.

Each poll ends as a success or as one error reason, written to the store as a new snapshot. A
target's data is withdrawn by a timer once its last success is older than the stale-after age,
so stale numbers never pass for fresh ones even while polls are backing off.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import aiohttp

from whatsapp_support_exporter.fleet.accounts import AccountPoller
from whatsapp_support_exporter.fleet.schedule import Budget, Scheduled, start_spread
from whatsapp_support_exporter.fleet.settings import Settings
from whatsapp_support_exporter.output.families import OPTIONAL_ENDPOINTS
from whatsapp_support_exporter.output.snapshot import EndpointState, TargetSnapshot, bumped
from whatsapp_support_exporter.output.store import Store
from whatsapp_support_exporter.upstream.cloud.account import CloudAccount
from whatsapp_support_exporter.upstream.errors import PollError
from whatsapp_support_exporter.upstream.http import new_session
from whatsapp_support_exporter.upstream.onprem.client import Answer, Client
from whatsapp_support_exporter.upstream.onprem.target import Target, TLSOptions

log = logging.getLogger("whatsapp_support_exporter.fleet.poller")

# /v1/account/shards is asked on the first poll and then every this many polls.
SHARDS_EVERY = 10


def _https(url: str) -> bool:
    return url[:6].lower() == "https:"


def ssl_for(options: TLSOptions) -> ssl.SSLContext | bool:
    """The TLS policy of a target: its CA file, the system store, or no verification."""
    if not options.verify:
        log.warning("TLS certificate verification of an upstream is off")
        return False
    return ssl.create_default_context(cafile=str(options.ca_file) if options.ca_file else None)


class TargetPoller(Scheduled[Answer]):
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
    ) -> None:
        super().__init__(settings, budget, rng)
        self.name = target.name
        self.target = target
        self.store = store
        self.clock = clock
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
        self._publish(self.snapshot)

    @property
    def interval(self) -> float:
        return self.settings.poll_interval

    @property
    def stale_after(self) -> float:
        return self.settings.stale_after_seconds

    @property
    def failing(self) -> bool:
        return not self.snapshot.up and self.snapshot.polls > 0

    def _publish(self, snapshot: TargetSnapshot) -> None:
        self.snapshot = snapshot
        if not self.stopped:  # a removed target must not come back
            self.store.update(snapshot)

    async def attempt(self) -> Answer:
        """The client's attempt within a slot of the shared budget; shards at most every
        SHARDS_EVERY-th poll of a multiconnect target (the client checks)."""
        wants_shards = (
            self.settings.collector_shards
            and (self.snapshot.support is None or self._multiconnect())
            and self.snapshot.polls % SHARDS_EVERY == 0
        )
        return await self.in_slot(
            lambda: self.client.attempt(health=self.settings.collector_health, shards=wants_shards)
        )

    def _multiconnect(self) -> bool:
        support = self.snapshot.support
        return support is not None and any(c.fields.multi_connect for c in support.containers)

    def succeeded(self, answer: Answer, duration: float) -> float:
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
        self.arm_stale_timer()
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
        return self.jittered(self.settings.poll_interval)

    def failed(self, err: PollError, duration: float, cause: BaseException | None = None) -> float:
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
        return self.next_delay(err)

    def withdraw(self) -> None:
        """The last success is too old: stop serving its data, keep the poll series."""
        if self.snapshot.support is not None:
            log.info("data is stale, withdrawn", extra={"target": self.snapshot.name})
            self._publish(replace(self.snapshot, support=None, health=None, shards_configured=None))


class Poller:
    """The polling of this replica's targets and Cloud API accounts: one shared session, one
    budget, one poller each; changed by ``apply`` (the fleet, ``fleet.reload``, decides which)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        targets: list[Target],
        accounts: Sequence[CloudAccount] = (),
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.sleep = sleep  # how the pollers wait (tests drive it)
        self.store = store
        self.targets = targets
        self.accounts = list(accounts)
        self.session: aiohttp.ClientSession | None = None
        self.budget: Budget | None = None
        self.pollers: dict[str, TargetPoller] = {}
        self.account_pollers: dict[str, AccountPoller] = {}
        self._ssl: dict[TLSOptions, ssl.SSLContext | bool] = {}

    async def start(self) -> None:
        interval = self.settings.poll_interval
        self.session = new_session(self.settings.max_concurrency * 4, min(interval + 5.0, 75.0))
        self.budget = Budget(self.settings.max_concurrency)
        await self.apply(self.targets, self.accounts)

    def _ssl_for(self, options: TLSOptions) -> ssl.SSLContext | bool:
        context = self._ssl.get(options)
        if context is None:
            context = self._ssl[options] = ssl_for(options)
        return context

    async def apply(
        self, targets: list[Target], accounts: Sequence[CloudAccount] | None = None
    ) -> tuple[int, int, int]:
        """Make the fleet these targets (and accounts, when given): unchanged ones keep their
        poller (counters, token, connection); changed ones restart; removed ones stop and their
        series go; new ones start. Returns (added, changed, removed), both kinds together."""
        session, budget = self.session, self.budget
        assert session is not None and budget is not None
        # TLS contexts no target uses any more go (a context holds its CA store)
        in_use = {t.tls for t in targets}
        self._ssl = {options: ctx for options, ctx in self._ssl.items() if options in in_use}
        counts = await _reconcile(
            self.pollers,
            {t.name: t for t in targets},
            lambda p: p.target,
            lambda t: TargetPoller(
                t,
                session,
                self.store,
                self.settings,
                budget,
                # a plain-HTTP target needs no TLS context (loading the CA store costs 0.8 MiB)
                ssl_context=self._ssl_for(t.tls) if _https(t.url) else True,
            ),
            self.store.delete,
            self.sleep,
        )
        self.targets = targets
        if accounts is not None:
            more = await _reconcile(
                self.account_pollers,
                {a.name: a for a in accounts},
                lambda p: p.account,
                lambda a: AccountPoller(a, session, self.store, self.settings, budget),
                self.store.delete_account,
                self.sleep,
            )
            counts = (counts[0] + more[0], counts[1] + more[1], counts[2] + more[2])
            self.accounts = list(accounts)
        return counts

    async def stop(self) -> None:
        """Cancel polls in flight and close the session."""
        everything: list[Scheduled[Any]] = [*self.pollers.values(), *self.account_pollers.values()]
        await asyncio.gather(*(p.stop() for p in everything), return_exceptions=True)
        if self.session is not None:
            await self.session.close()


P = TypeVar("P", bound="Scheduled[Any]")
C = TypeVar("C")


async def _reconcile(
    running: dict[str, P],
    wanted: dict[str, C],
    config_of: Callable[[P], C],
    make: Callable[[C], P],
    forget: Callable[[str], None],
    sleep: Callable[[float], Awaitable[None]],
) -> tuple[int, int, int]:
    """Stop what was removed or changed (its series go), start what is new or changed, their
    first polls spread by how many start together (a lone target polls at once)."""
    removed = [name for name in running if name not in wanted]
    changed = [n for n, c in wanted.items() if n in running and config_of(running[n]) != c]
    for name in removed + changed:
        await running.pop(name).stop()
        forget(name)
    starting = [name for name in wanted if name not in running]
    for name in starting:
        poller = running[name] = make(wanted[name])
        poller.spread = start_spread(len(starting), poller.interval)
        poller.sleep = sleep
        poller.start()
    return len(starting) - len(changed), len(changed), len(removed)
