"""Cloud API settings as an operator writes them: two variables and ``check``, the config file's
``cloud`` section, one line and exit 2 for each mistake, nothing of the Cloud without them."""

from __future__ import annotations

import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from tests.cloudgraph import TOKEN, WABA_ID, FakeGraph, number
from tests.conftest import exporter_app_factory, make_settings
from tests.test_check import run_check
from whatsapp_support_exporter.cli.settings import account_warnings, build_parser, load_settings
from whatsapp_support_exporter.fleet.config import ConfigError, load_fleet
from whatsapp_support_exporter.fleet.settings import Settings
from whatsapp_support_exporter.upstream.cloud.account import CloudAccount


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in os.environ:
        if key.startswith("WA_"):
            monkeypatch.delenv(key)
    return monkeypatch


async def test_two_variables_and_check_show_an_account(graph: FakeGraph) -> None:
    graph.numbers = [number(1), number(2, quality_rating="RED", status="FLAGGED")]
    code, out, err = await run_check(
        WA_CLOUD_WABA_IDS=f"acme={WABA_ID}",
        WA_CLOUD_TOKEN=TOKEN,
        WA_CLOUD_GRAPH_URL=graph.base,
    )
    assert code == 0, err
    header, row = out.splitlines()[0], next(x for x in out.splitlines() if x.startswith("acme"))
    assert header.split() == [
        "account",
        "waba",
        "id",
        "state",
        "numbers",
        "worst",
        "quality",
        "notes",
    ]
    assert row.split()[:5] == ["acme", WABA_ID, "critical", "2", "RED"]
    assert "1 number not CONNECTED" in row
    assert "1 of 1 accounts answered." in out
    assert "targets answered" not in out
    assert TOKEN not in out + err


async def test_check_exits_1_when_an_account_cannot_be_polled(graph: FakeGraph) -> None:
    wrong = "EAAG-not-the-token-1234567890"
    code, out, err = await run_check(
        WA_CLOUD_WABA_IDS=WABA_ID, WA_CLOUD_TOKEN=wrong, WA_CLOUD_GRAPH_URL=graph.base
    )
    assert code == 1
    row = next(x for x in out.splitlines() if x.startswith(WABA_ID))
    assert "down" in row and "auth: the account answered HTTP 401, Graph error 190" in row
    assert "0 of 1 accounts answered." in out
    assert wrong not in out + err


def test_the_help_lists_the_cloud_settings() -> None:
    text = build_parser().format_help()
    for name in (
        "--cloud.waba-id",
        "WA_CLOUD_WABA_IDS",
        "--cloud.graph-url",
        "WA_CLOUD_GRAPH_URL",
        "--cloud.api-version",
        "WA_CLOUD_API_VERSION",
        "--cloud.interval",
        "WA_CLOUD_INTERVAL",
        "WA_CLOUD_TOKEN",
        "WA_CLOUD_TOKEN_FILE",
    ):
        assert name in text, name
    assert "poll every target and Cloud API account once" in text  # what check does


def test_accounts_alone_are_a_valid_setup_with_the_defaults(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("WA_CLOUD_WABA_IDS", f"acme={WABA_ID},{WABA_ID[:-1]}7")
    clean_env.setenv("WA_CLOUD_TOKEN", TOKEN)
    settings = load_settings([])
    fleet = load_fleet(settings)
    assert fleet.targets == []
    assert fleet.accounts == [
        CloudAccount(
            "acme", WABA_ID, "https://graph.facebook.com", "v24.0", 300.0, SecretStr(TOKEN)
        ),
        CloudAccount(f"{WABA_ID[:-1]}7", f"{WABA_ID[:-1]}7", token=SecretStr(TOKEN)),
    ]


def test_flags_win_over_the_variables(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    clean_env.setenv("WA_CLOUD_TOKEN_FILE", str(token))
    clean_env.setenv("WA_CLOUD_INTERVAL", "2m")
    settings = load_settings(
        [
            "--cloud.waba-id",
            "a=1",
            "--cloud.waba-id",
            "b=2",
            "--cloud.interval",
            "90s",
            "--cloud.api-version",
            "v25.0",
            "--cloud.graph-url",
            "http://127.0.0.1:9/",
        ]
    )
    accounts = load_fleet(settings).accounts
    assert [(a.name, a.waba_id) for a in accounts] == [("a", "1"), ("b", "2")]
    assert {(a.interval, a.api_version, a.graph_url, a.token_file) for a in accounts} == {
        (90.0, "v25.0", "http://127.0.0.1:9", token)
    }


BAD = {
    "waba-id-not-digits": (
        {"WA_CLOUD_WABA_IDS": "acme=12ab", "WA_CLOUD_TOKEN": TOKEN},
        "invalid setting WA_CLOUD_WABA_IDS (--cloud.waba-id): a WABA id is",
    ),
    "duplicate-name": (
        {"WA_CLOUD_WABA_IDS": "a=1,a=2", "WA_CLOUD_TOKEN": TOKEN},
        "invalid setting WA_CLOUD_WABA_IDS (--cloud.waba-id): account name 'a'",
    ),
    "no-token": (
        {"WA_CLOUD_WABA_IDS": "1"},
        "invalid setting WA_CLOUD_TOKEN: the Cloud API accounts need",
    ),
    "token-without-accounts": (
        {"WA_CLOUD_TOKEN": TOKEN},
        "invalid setting WA_CLOUD_WABA_IDS (--cloud.waba-id): the Cloud API token is set but no"
        " account is",
    ),
    "waba-id-singular-with-a-token": (
        {"WA_CLOUD_WABA_ID": "102290129340398", "WA_CLOUD_TOKEN": TOKEN},
        "invalid setting WA_CLOUD_WABA_IDS (--cloud.waba-id): the Cloud API token is set but no"
        " account is: name the accounts to watch as [NAME=]WABA_ID, comma-separated"
        " (WA_CLOUD_WABA_ID is set: did you mean WA_CLOUD_WABA_IDS?)",
    ),
    "waba-id-singular-alone": (
        {"WA_CLOUD_WABA_ID": "102290129340398"},
        "invalid setting WA_TARGETS (--target): at least one target is required (or"
        " --cloud.waba-id, --config.file, or --demo) (WA_CLOUD_WABA_ID is set: did you mean"
        " WA_CLOUD_WABA_IDS?)",
    ),
    "token-file-misspelt": (
        {"WA_CLOUD_WABA_IDS": "1", "WA_CLOUD_TOKEN_FIL": "{tmp}/token"},
        "invalid setting WA_CLOUD_TOKEN: the Cloud API accounts need WA_CLOUD_TOKEN or"
        " WA_CLOUD_TOKEN_FILE (WA_CLOUD_TOKEN_FIL is set: did you mean WA_CLOUD_TOKEN_FILE?)",
    ),
    "both-tokens": (
        {"WA_CLOUD_WABA_IDS": "1", "WA_CLOUD_TOKEN": TOKEN, "WA_CLOUD_TOKEN_FILE": "{tmp}/token"},
        "invalid setting WA_CLOUD_TOKEN_FILE: WA_CLOUD_TOKEN and",
    ),
    "token-file-missing": (
        {"WA_CLOUD_WABA_IDS": "1", "WA_CLOUD_TOKEN_FILE": "{tmp}/nope"},
        "invalid setting WA_CLOUD_TOKEN_FILE: cannot read {tmp}/nope: file not found",
    ),
    "interval-too-short": (
        {"WA_CLOUD_WABA_IDS": "1", "WA_CLOUD_TOKEN": TOKEN, "WA_CLOUD_INTERVAL": "5s"},
        "invalid setting WA_CLOUD_INTERVAL (--cloud.interval): must be at least 10s",
    ),
    "graph-url": (
        {
            "WA_CLOUD_WABA_IDS": "1",
            "WA_CLOUD_TOKEN": TOKEN,
            "WA_CLOUD_GRAPH_URL": "graph.facebook.com",
        },
        "invalid setting WA_CLOUD_GRAPH_URL (--cloud.graph-url): must be an http://",
    ),
    "api-version": (
        {"WA_CLOUD_WABA_IDS": "1", "WA_CLOUD_TOKEN": TOKEN, "WA_CLOUD_API_VERSION": "24"},
        "invalid setting WA_CLOUD_API_VERSION (--cloud.api-version): must be a Graph",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_cloud_setting_exits_2_with_one_line_naming_it(
    case: str,
    clean_env: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import whatsapp_support_exporter.cli.main as entry

    (tmp_path / "token").write_text(TOKEN)
    env, expected = BAD[case]
    for key, value in env.items():
        clean_env.setenv(key, value.replace("{tmp}", str(tmp_path)))

    def accepted(work: Coroutine[Any, Any, None]) -> None:
        work.close()
        raise AssertionError(f"the settings of {case} were accepted")

    clean_env.setattr(entry, "setup_logging", lambda *_: None)
    clean_env.setattr(entry, "run", accepted)
    with pytest.raises(SystemExit) as exited:
        entry.main([])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert exited.value.code == 2
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(
        "whatsapp-support-exporter: " + expected.replace("{tmp}", str(tmp_path))
    ), lines[0]
    assert TOKEN not in captured.err


def write_config(tmp_path: Path, cloud: dict[str, Any]) -> Settings:
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"cloud": cloud}))
    return make_settings(targets=[], config_file=config)


def test_the_cloud_section_gives_accounts_their_own_tokens(tmp_path: Path) -> None:
    (tmp_path / "meta-token").write_text(TOKEN)
    (tmp_path / "acme-token").write_text("EAAG-acme-own-token")
    settings = write_config(
        tmp_path,
        {
            "graph_url": "http://127.0.0.1:1",
            "api_version": "v25.0",
            "interval": "2m",
            "token_file": "meta-token",
            "accounts": [
                {"name": "acme", "waba_id": WABA_ID, "token_file": "acme-token"},
                {"name": "beta", "waba_id": 42},
            ],
        },
    )
    acme, beta = load_fleet(settings).accounts
    assert (acme.token_file, beta.token_file) == (tmp_path / "acme-token", tmp_path / "meta-token")
    assert (beta.waba_id, beta.interval, beta.api_version) == ("42", 120.0, "v25.0")
    assert acme.read_token() == "EAAG-acme-own-token"


@pytest.mark.parametrize(
    ("cloud", "message"),
    [
        (
            {"token": "t", "accounts": [{"name": "a", "waba_id": "1x"}]},
            "cloud.accounts[0].waba_id: a WABA id is digits only",
        ),
        (
            {
                "token": "t",
                "accounts": [{"name": "a", "waba_id": "1"}, {"name": "a", "waba_id": "2"}],
            },
            'cloud.accounts[1]: account name "a" is also defined at',
        ),
        ({"token": "t", "acounts": []}, "cloud.acounts: unknown key"),
        ({"token": "t", "interval": "5s"}, "cloud.interval: must be at least 10s"),
        ({"token": "t", "token_file": "x"}, "cloud.token_file:"),
        ({"accounts": [{"name": "a", "waba_id": "1"}]}, "cloud.accounts[0]: no token"),
        ({"token": "t", "graph_url": "ftp://x"}, "cloud.graph_url: must be an http://"),
    ],
)
def test_a_mistake_in_the_cloud_section_is_one_line_naming_the_place(
    tmp_path: Path, cloud: dict[str, Any], message: str
) -> None:
    settings = write_config(tmp_path, cloud)
    with pytest.raises(ConfigError) as caught:
        load_fleet(settings)
    line = str(caught.value)
    assert line.startswith(f"{tmp_path / 'config.yml'}: "), line
    assert message in line, line
    assert "\n" not in line


def test_an_interval_under_a_minute_warns_about_the_rate_limit() -> None:
    fast = CloudAccount("a", "1", interval=30.0)
    (warning,) = account_warnings([fast, CloudAccount("b", "2")])
    assert "30s is below 1m" in warning and "200 calls per hour" in warning
    assert account_warnings([CloudAccount("b", "2")]) == []


async def test_without_cloud_settings_there_is_no_account_and_no_cloud_series(
    graph: FakeGraph, aiohttp_client: Any, sim_base: str
) -> None:
    from tests.conftest import API_KEY

    settings = make_settings(targets=[f"wa={sim_base}/wa"], api_key=API_KEY)
    assert load_fleet(settings).accounts == []
    app, store = exporter_app_factory(settings)
    client = await aiohttp_client(app)
    text = await (await client.get("/metrics")).text()
    assert "whatsapp_cloud" not in text and "cloud_poll" not in text
    assert "Cloud API accounts" not in await (await client.get("/")).text()
    assert store.accounts == {}
    assert graph.requests == []
