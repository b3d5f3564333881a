"""The demo's Cloud API account: polled from the simulated Graph API beside the On-Premises
clients, with numbers in every state and one still on ON_PREMISE."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import series
from tests.promql import RULES, promtool
from whatsapp_api_simulator.cloud import GraphSimulator
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


async def demo_account_exposition() -> str:
    """The demo account's series, as the exporter serves them after one poll."""
    settings, _, runner = await start_demo_simulator(load_settings(["--demo"]))
    session = new_session(4, 5.0)
    try:
        (account,) = settings.env_accounts()
        store = Store(render_target, render_account)
        poller = AccountPoller(account, session, store, settings, Budget(4))
        await poller.poll_once()
        assert poller.snapshot.up, poller.snapshot.last_error_detail
        return Exposition(store).render().decode()
    finally:
        await session.close()
        await runner.cleanup()


def test_the_demo_account_raises_the_alerts_the_simulator_docs_list(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """docs/simulator.md lists what the demo's account fires on purpose; nothing else may fire.

    Its still numbers are held for 40 minutes, past every alert's ``for:``; the three numbers
    that move with the clock are left out (their changes are shorter than the alerts wait).
    """
    for key in os.environ:
        if key.startswith("WA_"):
            monkeypatch.delenv(key)
    text = asyncio.run(demo_account_exposition())
    moving = {n.id for n in GraphSimulator(token="t").add_demo_account(label="demo").numbers[-3:]}
    inputs = []
    for line in text.splitlines():
        if not line.startswith(("whatsapp_cloud_", "whatsapp_exporter_cloud_")):
            continue
        name_labels, _, value = line.rpartition(" ")
        if not math.isfinite(float(value)) or any(f'"{n}"' in name_labels for n in moving):
            continue
        name, _, labels = name_labels.partition("{")
        labels = 'job="wa",instance="demo:10042"' + ("," + labels if labels else "}")
        inputs.append({"series": f"{name}{{{labels}", "values": f"{float(value):g}x40"})
    assert any("phone_number_status" in i["series"] for i in inputs)
    statuses = ["BANNED", "DISCONNECTED", "FLAGGED", "MIGRATED", "PENDING", "RATE_LIMITED"]
    statuses.append("UNKNOWN")
    firing = 'ALERTS{alertstate="firing"}'
    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": inputs,
                "promql_expr_test": [
                    {
                        "expr": f"count by (alertname) ({firing})",
                        "eval_time": "30m",
                        "exp_samples": [
                            {"labels": '{alertname="WhatsAppCloudNumberNotConnected"}', "value": 7},
                            {"labels": '{alertname="WhatsAppCloudNumberOnPremises"}', "value": 3},
                        ],
                    },
                    {
                        "expr": 'count by (status) (ALERTS{alertstate="firing",'
                        'alertname="WhatsAppCloudNumberNotConnected"})',
                        "eval_time": "30m",
                        "exp_samples": [
                            {"labels": f'{{status="{status}"}}', "value": 1} for status in statuses
                        ],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "demo_test.yml"
    path.write_text(yaml.safe_dump(tests))
    result = subprocess.run(
        [promtool(), "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
