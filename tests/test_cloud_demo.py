"""The demo's Cloud API account: polled from the simulated Graph API beside the On-Premises
clients, with numbers in every state and one still on ON_PREMISE."""

from __future__ import annotations

import os

import pytest

from tests.conftest import series
from whatsapp_support_exporter.cli.main import DEMO_CLOUD_TOKEN, start_demo_simulator
from whatsapp_support_exporter.cli.settings import load_settings
from whatsapp_support_exporter.fleet.accounts import AccountPoller
from whatsapp_support_exporter.fleet.schedule import Budget
from whatsapp_support_exporter.output.cloud_families import (
    NUMBER_STATUSES,
    PLATFORMS,
    QUALITY_RATINGS,
    render_account,
)
from whatsapp_support_exporter.output.exposition import Exposition
from whatsapp_support_exporter.output.families import render_target
from whatsapp_support_exporter.output.store import Store
from whatsapp_support_exporter.upstream.http import new_session


def current(text: str, name: str, label: str) -> set[str]:
    """The values of ``label`` whose series of ``name`` is 1."""
    return {
        labels.split(f'{label}="')[1].split('"')[0]
        for labels, value in series(text, name).items()
        if value == 1
    }


async def test_the_demo_polls_an_account_showing_every_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key in os.environ:
        if key.startswith("WA_"):
            monkeypatch.delenv(key)
    settings, targets, runner = await start_demo_simulator(load_settings(["--demo"]))
    session = new_session(4, 5.0)
    try:
        (account,) = settings.env_accounts()
        assert account.name == "demo" and account.read_token() == DEMO_CLOUD_TOKEN
        assert account.interval >= 10
        assert {t.name for t in targets} == {"cluster", "single"}
        store = Store(render_target, render_account)
        poller = AccountPoller(account, session, store, settings, Budget(4))
        await poller.poll_once()
        assert poller.snapshot.up, poller.snapshot.last_error_detail
        text = Exposition(store).render().decode()
    finally:
        await session.close()
        await runner.cleanup()
    assert current(text, "whatsapp_cloud_phone_number_platform", "platform") >= set(PLATFORMS)
    assert current(text, "whatsapp_cloud_phone_number_quality", "quality") >= set(QUALITY_RATINGS)
    assert current(text, "whatsapp_cloud_phone_number_status", "status") >= set(NUMBER_STATUSES)
    assert "whatsapp_cloud_api_usage_ratio{" in text
    assert float("inf") in series(text, "whatsapp_cloud_phone_number_messaging_limit").values()
