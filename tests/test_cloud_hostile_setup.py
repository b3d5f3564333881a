"""The Cloud API set up from the environment alone, against an independent Graph fake
(tests/metagraph.py): ``check`` and the served exporter as an operator runs them, and bad
settings refused in one line."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.cloud_hostile_kit import value
from tests.conftest import free_port
from tests.metagraph import TOKEN, WABA, MetaGraph, phone


async def run(*args: str, **env: str) -> tuple[int, str, str]:
    """``python -m whatsapp_support_exporter *args`` with only these WA_ variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WA_") and k != "NO_COLOR"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "whatsapp_support_exporter",
        *args,
        env={**clean, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_check_polls_an_account_set_up_by_two_variables_and_the_graph_url(
    meta: MetaGraph,
) -> None:
    meta.numbers = [phone(i) for i in range(130)] + [phone(999, quality_rating="RED")]
    code, out, err = await run(
        "check",
        WA_CLOUD_WABA_IDS=f"harbour={WABA}",
        WA_CLOUD_TOKEN=TOKEN,
        WA_CLOUD_GRAPH_URL=meta.base,
    )
    assert code == 0, err
    row = next(line for line in out.splitlines() if line.startswith("harbour"))
    assert WABA in row and "131" in row and "RED" in row
    assert "1 of 1 accounts answered" in out
    assert TOKEN not in out + err


async def test_check_exits_1_naming_the_reason_when_the_token_is_rejected(
    meta: MetaGraph, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("EAAJB-revoked-token-5d1c\n")
    code, out, err = await run(
        "check",
        WA_CLOUD_WABA_IDS=WABA,
        WA_CLOUD_TOKEN_FILE=str(token_file),
        WA_CLOUD_GRAPH_URL=meta.base,
    )
    assert code == 1
    row = next(line for line in out.splitlines() if line.startswith(WABA))
    assert "auth" in row and "190" in row
    assert "revoked-token" not in out + err


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"WA_CLOUD_WABA_IDS": "harbour=1049x6"}, "WA_CLOUD_WABA_IDS"),
        ({"WA_CLOUD_WABA_IDS": "a=1,a=2"}, "WA_CLOUD_WABA_IDS"),
        ({"WA_CLOUD_GRAPH_URL": "graph.facebook.com"}, "WA_CLOUD_GRAPH_URL"),
        ({"WA_CLOUD_GRAPH_URL": f"https://x:{TOKEN}@graph.facebook.com"}, "WA_CLOUD_GRAPH_URL"),
        ({"WA_CLOUD_INTERVAL": "5s"}, "WA_CLOUD_INTERVAL"),
        ({"WA_CLOUD_INTERVAL": "soon"}, "WA_CLOUD_INTERVAL"),
        ({"WA_CLOUD_API_VERSION": "24.0"}, "WA_CLOUD_API_VERSION"),
        (
            {"WA_CLOUD_TOKEN": "", "WA_CLOUD_TOKEN_FILE": "/nonexistent/token"},
            "WA_CLOUD_TOKEN_FILE",
        ),
        ({"WA_CLOUD_TOKEN": ""}, "WA_CLOUD_TOKEN"),
        ({"WA_CLOUD_TOKEN": f"Bearer {TOKEN}"}, "WA_CLOUD_TOKEN"),
        ({"WA_CLOUD_TOKEN": "", "WA_CLOUD_TOKEN_FILE": "bearer"}, "WA_CLOUD_TOKEN_FILE"),
    ],
    ids=[
        "waba-id",
        "name-twice",
        "url-scheme",
        "url-userinfo",
        "interval-short",
        "interval-word",
        "version",
        "token-file",
        "no-token",
        "bearer-prefix",
        "bearer-in-file",
    ],
)
@pytest.mark.parametrize("command", ["serve", "check"])
async def test_a_bad_cloud_setting_is_one_line_naming_it_and_exit_2(
    env: dict[str, str], named: str, command: str, tmp_path: Path
) -> None:
    if env.get("WA_CLOUD_TOKEN_FILE") == "bearer":
        env = {**env, "WA_CLOUD_TOKEN_FILE": str(tmp_path / "token")}
        (tmp_path / "token").write_text(f"Bearer {TOKEN}\n")
    settings = {"WA_CLOUD_WABA_IDS": WABA, "WA_CLOUD_TOKEN": TOKEN, **env}
    settings = {k: v for k, v in settings.items() if v}
    code, out, err = await run(*(["check"] if command == "check" else []), **settings)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], err
    assert "Traceback" not in err and TOKEN not in err + out


async def test_the_served_exporter_with_the_environment_alone_exports_the_account(
    meta: MetaGraph, tmp_path: Path
) -> None:
    meta.numbers = [phone(1), phone(2, platform_type="ON_PREMISE")]
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WA_")}
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "whatsapp_support_exporter",
        env={
            **clean,
            "WA_CLOUD_WABA_IDS": f"harbour={WABA}",
            "WA_CLOUD_TOKEN_FILE": str(token_file),
            "WA_CLOUD_GRAPH_URL": meta.base,
            "WA_LISTEN_ADDRESS": f"127.0.0.1:{port}",
        },
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    text = ""
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(150):
                await asyncio.sleep(0.1)
                try:
                    async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                        text = await resp.text()
                except aiohttp.ClientConnectionError:
                    continue
                if value(text, "whatsapp_cloud_up", account="harbour") == 1:
                    break
            async with session.get(f"http://127.0.0.1:{port}/") as resp:
                landing = await resp.text()
    finally:
        proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), 10)
    assert value(text, "whatsapp_cloud_up", account="harbour") == 1
    moving = phone(2)["id"]
    assert (
        value(
            text,
            "whatsapp_cloud_phone_number_platform",
            phone_number_id=moving,
            platform="ON_PREMISE",
        )
        == 1
    )
    assert value(text, "whatsapp_up") is None  # no On-Premises target, no target series
    assert "harbour" in landing
    assert TOKEN not in text + landing + err.decode()
