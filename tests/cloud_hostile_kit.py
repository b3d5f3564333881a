"""The exporter's web app served in-process beside an independent Graph fake (tests/metagraph.py):
polls are driven by hand, and what a user sees is read from ``/metrics`` and the landing page."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from tests.metagraph import TOKEN, WABA
from whatsapp_support_exporter.fleet.accounts import AccountPoller
from whatsapp_support_exporter.fleet.schedule import Budget
from whatsapp_support_exporter.fleet.settings import Settings
from whatsapp_support_exporter.output.store import Store
from whatsapp_support_exporter.upstream.cloud.account import CloudAccount
from whatsapp_support_exporter.upstream.http import new_session


class Exporter:
    """A store, its web app on a loopback port, and the account pollers a test adds."""

    def __init__(
        self, client: TestClient[Any, Any], store: Store, settings: Callable[..., Settings]
    ) -> None:
        self.client = client
        self.settings = settings
        self.store = store
        self.session = new_session(8, 5.0)
        self.budget = Budget(4)
        self.pollers: list[AccountPoller] = []

    def account(
        self,
        graph_url: str,
        *,
        name: str = "harbour",
        token: str | None = TOKEN,
        token_file: Path | None = None,
        interval: float = 300.0,
        api_version: str = "v24.0",
        **settings: Any,
    ) -> AccountPoller:
        cloud = CloudAccount(
            name,
            WABA,
            graph_url=graph_url,
            api_version=api_version,
            interval=interval,
            token=SecretStr(token) if token is not None and token_file is None else None,
            token_file=token_file,
        )
        poller = AccountPoller(
            cloud,
            self.session,
            self.store,
            self.settings(**settings),
            self.budget,
            rng=random.Random(7),
        )
        self.pollers.append(poller)
        return poller

    async def metrics(self) -> str:
        resp = await self.client.get("/metrics")
        assert resp.status == 200
        return await resp.text()

    async def landing(self) -> str:
        resp = await self.client.get("/")
        return await resp.text()

    async def close(self) -> None:
        for poller in self.pollers:
            await poller.stop()
        await self.session.close()


def value(text: str, name: str, /, **labels: str) -> float | None:
    """The sample of ``name`` whose labels include ``labels`` (None when there is none)."""
    for key, sample in series(text, name).items():
        if all(f'{k}="{v}"' in key for k, v in labels.items()):
            return sample
    return None


def errors(text: str, account: str = "harbour") -> dict[str, float]:
    found = series(text, "whatsapp_exporter_cloud_poll_errors_total")
    return {
        key.split('reason="')[1].rstrip('"}'): sample
        for key, sample in found.items()
        if f'account="{account}"' in key and sample
    }


def series(text: str, name: str) -> dict[str, float]:
    """Samples of one metric in an exposition, as {labels: value}."""
    out = {}
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")):
            labels, _, sample = line.rpartition(" ")
            out[labels[len(name) :]] = float(sample)
    return out
