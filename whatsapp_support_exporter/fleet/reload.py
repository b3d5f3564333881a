"""The fleet of this replica: which targets it polls, and reloading them without a restart.

A (re)load reads the whole configuration (settings' targets, the configuration file, its target
files), keeps this shard's part and hands it to the poller, which keeps every unchanged target
as it is. A bad new configuration changes nothing: it is logged in one line, and the
``whatsapp_exporter_config_last_reload_*`` series and the landing page say so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from whatsapp_support_exporter.fleet.config import (
    ConfigError,
    FleetConfig,
    config_fingerprint,
    load_fleet,
)
from whatsapp_support_exporter.fleet.poller import Poller
from whatsapp_support_exporter.fleet.settings import Settings
from whatsapp_support_exporter.fleet.sharding import assigned
from whatsapp_support_exporter.output.families import exporter_pieces
from whatsapp_support_exporter.output.store import Store
from whatsapp_support_exporter.upstream.cloud.account import CloudAccount
from whatsapp_support_exporter.upstream.onprem.target import Target

log = logging.getLogger("whatsapp_support_exporter.fleet.reload")

# How often the configuration's files are checked for a change (a stat of each: about 20 µs).
WATCH_SECONDS = 5.0


@dataclass(frozen=True)
class ReloadStatus:
    ok: bool
    success_at: float | None
    error: str = ""


def shard_targets(settings: Settings, targets: list[Target]) -> list[Target]:
    """This replica's part of the fleet."""
    return assigned(targets, settings.shard, settings.total_shards)


class Fleet:
    """Loads the configuration, owns reloads, publishes the exporter's own series."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        load: Callable[[Settings], FleetConfig] = load_fleet,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self._load = load
        self.clock = clock
        self.status = ReloadStatus(ok=True, success_at=None)
        self.poller: Poller | None = None
        # this replica's Cloud API accounts after the first load
        self.accounts: list[CloudAccount] = []
        self._lock = asyncio.Lock()
        self._fingerprint: tuple[tuple[str, int, int], ...] = ()

    def initial(self) -> list[Target]:
        """The first load, at start: raises ConfigError (the caller exits 2)."""
        self._fingerprint = config_fingerprint(self.settings)
        loaded = self._load(self.settings)
        targets = shard_targets(self.settings, loaded.targets)
        self.accounts = assigned(loaded.accounts, self.settings.shard, self.settings.total_shards)
        self.status = ReloadStatus(ok=True, success_at=self.clock())
        self._publish()
        return targets

    def demo(self) -> None:
        """The demo's fleet is built in code: it counts as one successful load."""
        self.status = ReloadStatus(ok=True, success_at=self.clock())
        self._publish()

    def _publish(self) -> None:
        self.store.set_exporter_pieces(
            exporter_pieces(
                reload_ok=self.status.ok,
                reload_timestamp=self.status.success_at,
                shard=self.settings.shard,
                total_shards=self.settings.total_shards,
            )
        )

    async def reload(self, why: str) -> str | None:
        """Load the configuration again and apply it; None on success, else the one-line error."""
        assert self.poller is not None
        async with self._lock:
            try:
                loaded, load_cpu = await asyncio.to_thread(self._load_timed)
            except (ConfigError, OSError) as err:
                self.status = ReloadStatus(False, self.status.success_at, str(err))
                self._publish()
                log.error(
                    "reload failed, the running configuration stays",
                    extra={"trigger": why, "error": str(err)},
                )
                return str(err)
            started = time.thread_time()
            accounts = assigned(loaded.accounts, self.settings.shard, self.settings.total_shards)
            added, changed, removed = await self.poller.apply(
                shard_targets(self.settings, loaded.targets), accounts
            )
            self.accounts = accounts
            apply_cpu = time.thread_time() - started
            self.status = ReloadStatus(True, self.clock())
            self._publish()
            log.info(
                "configuration reloaded",
                extra={
                    "trigger": why,
                    "targets": len(self.poller.pollers),
                    "accounts": len(self.poller.account_pollers),
                    "added": added,
                    "changed": changed,
                    "removed": removed,
                    # CPU of the reload itself (its load in a worker thread, the diff on the loop)
                    "cpu_ms": round((load_cpu + apply_cpu) * 1000, 1),
                },
            )
            return None

    def _load_timed(self) -> tuple[FleetConfig, float]:
        """Read the files again (in a worker thread); returns the fleet and the CPU it took."""
        started = time.thread_time()
        self._fingerprint = config_fingerprint(self.settings)
        loaded = self._load(self.settings)
        return loaded, time.thread_time() - started

    async def watch(self, every: float = WATCH_SECONDS) -> None:
        """Reload on its own when a file of the configuration changes (mtime and size)."""
        while True:
            await asyncio.sleep(every)
            try:
                fingerprint = await asyncio.to_thread(config_fingerprint, self.settings)
            except OSError:
                continue
            if fingerprint != self._fingerprint:
                try:
                    await self.reload("file change")
                except Exception:  # a bug must not end the watch for the process's life
                    log.exception("reload crashed, the running configuration stays")
