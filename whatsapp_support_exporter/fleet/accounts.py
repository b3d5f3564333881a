"""A Cloud API account polled by the machinery targets use: the same grid, budget, backoff and
stale timer (``schedule.py``); its own client and snapshot.

Besides backoff on ``rate_limited`` (``estimated_time_to_regain_access`` honoured up to
``--poll.max-backoff``), an account whose usage of the Graph API's rate limit reached
``USAGE_WAIT_RATIO`` waits longer before its next poll: two intervals, or the time the Graph
API says access comes back if that is longer, still at most the longest backoff.
"""

from __future__ import annotations

import logging
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import replace

import aiohttp

from whatsapp_support_exporter.fleet.schedule import Budget, Scheduled
from whatsapp_support_exporter.fleet.settings import Settings
from whatsapp_support_exporter.output.snapshot import AccountSnapshot, bumped
from whatsapp_support_exporter.output.store import Store
from whatsapp_support_exporter.upstream.cloud.account import CloudAccount
from whatsapp_support_exporter.upstream.cloud.client import CloudAnswer, CloudClient
from whatsapp_support_exporter.upstream.errors import PollError

log = logging.getLogger("whatsapp_support_exporter.fleet.poller")

# Usage of the Graph API's rate limit (any kind) from which the next poll waits longer.
USAGE_WAIT_RATIO = 0.9


class AccountPoller(Scheduled[CloudAnswer]):
    """Polls one account until stopped; its state is its current snapshot in the store."""

    kind = "account"

    def __init__(
        self,
        account: CloudAccount,
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
        self.name = account.name
        self.account = account
        self.store = store
        self.client = CloudClient(
            session,
            account,
            timeout=settings.poll_timeout,
            max_response_bytes=settings.max_response_bytes,
            max_series=settings.max_series,
            ssl_context=ssl_context,
            clock=clock,
        )
        self.snapshot = AccountSnapshot(name=account.name, waba_id=account.waba_id)
        self._publish(self.snapshot)

    @property
    def interval(self) -> float:
        return self.account.interval

    @property
    def stale_after(self) -> float:
        return self.account.stale_after

    @property
    def failing(self) -> bool:
        return not self.snapshot.up and self.snapshot.polls > 0

    def _publish(self, snapshot: AccountSnapshot) -> None:
        self.snapshot = snapshot
        if not self.stopped:  # a removed account must not come back
            self.store.update_account(snapshot)

    async def attempt(self) -> CloudAnswer:
        return await self.in_slot(self.client.attempt)

    def succeeded(self, answer: CloudAnswer, duration: float) -> float:
        snap = self.snapshot
        if not snap.up:
            log.info("account is up", extra={"account": snap.name})
        invalid = snap.invalid_fields
        for name in answer.invalid_fields:
            invalid = bumped(invalid, name)
        if answer.invalid_fields:
            log.debug(
                "dropped upstream fields that were missing or of the wrong type",
                extra={
                    "account": snap.name,
                    "fields": ",".join(sorted(set(answer.invalid_fields))),
                },
            )
        self.failures = 0
        self.arm_stale_timer()
        self._publish(
            replace(
                snap,
                polls=snap.polls + 1,
                up=True,
                waba=answer.waba,
                numbers=answer.numbers,
                usage=self.client.usage or snap.usage,
                last_success=answer.received_at,
                last_duration=duration,
                last_error=None,
                last_error_detail="",
                invalid_fields=invalid,
            )
        )
        return max(self.jittered(self.interval), self._usage_wait())

    def failed(self, err: PollError, duration: float, cause: BaseException | None = None) -> float:
        """Count the failure; log it when the account's state changes (an internal one with
        its traceback, at error level: it is ours to fix)."""
        snap = self.snapshot
        if snap.up or snap.last_error != err.reason:
            extra = {"account": snap.name, "reason": err.reason, "detail": err.detail}
            if cause is not None:
                log.error("poll failed inside the exporter", exc_info=cause, extra=extra)
            else:
                log.warning("account poll failed", extra=extra)
        self._publish(
            replace(
                snap,
                polls=snap.polls + 1,
                up=False,
                usage=self.client.usage or snap.usage,
                last_duration=duration,
                errors=bumped(snap.errors, err.reason),
                last_error=err.reason,
                last_error_detail=err.detail,
            )
        )
        return max(self.next_delay(err), self._usage_wait())

    def _usage_wait(self) -> float:
        """Near the rate limit: skip a poll (two intervals), or wait until access comes back."""
        usage = self.client.usage
        if usage is None or usage.highest < USAGE_WAIT_RATIO:
            return 0.0
        longest = max(self.settings.max_backoff, 2 * self.interval)
        wait = min(max(2 * self.interval, usage.regain_seconds), longest)
        if self.snapshot.usage is not None:
            log.info(
                "usage of the Graph API's rate limit is high, the next poll waits",
                extra={
                    "account": self.name,
                    "usage": round(usage.highest, 2),
                    "wait_seconds": round(wait),
                },
            )
        return wait

    def withdraw(self) -> None:
        """The last success is too old: stop serving its data, keep the poll series."""
        if self.snapshot.waba is not None or self.snapshot.numbers is not None:
            log.info("data is stale, withdrawn", extra={"account": self.name})
            self._publish(replace(self.snapshot, waba=None, numbers=None, usage=None))
