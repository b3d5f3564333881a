"""``whatsapp-support-exporter check`` as an operator runs it after writing a configuration: one
row per target and container, exit 0 / 1 / 2, plain text when it is not a terminal."""

from __future__ import annotations

import asyncio
import io
import os
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import API_KEY
from whatsapp_api_simulator.onprem import Simulator
from whatsapp_support_exporter.cli.check import main, print_table

KEY_A = "check-key-a-0123456789"
USER_B, PASSWORD_B = "ops-b", "pw-b-77c1d2e3"


async def run_check(*args: str, **env: str) -> tuple[int, str, str]:
    """``python -m whatsapp_support_exporter check`` in a subprocess (the simulator keeps serving meanwhile)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WA_") and k != "NO_COLOR"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "whatsapp_support_exporter",
        "check",
        *args,
        env={**clean, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def rows_of(out: str, target: str) -> list[str]:
    return [line for line in out.splitlines() if line.split(" ", 1)[0] == target]


@pytest.fixture
def two_auths(sim: Simulator, sim_base: str, tmp_path: Path) -> Path:
    """A single instance taking key A and an HA pair taking only login B, in one config file."""
    sim.add_instance("one", "single", api_key=KEY_A).socket_conn = "UP"  # no clock-driven flap
    sim.add_instance("two", "ha", username=USER_B, password=PASSWORD_B)
    (tmp_path / "password-b").write_text(PASSWORD_B + "\n")
    config = tmp_path / "config.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "auths": {
                    "a": {"api_key": KEY_A},
                    "b": {"username": USER_B, "password_file": "password-b"},
                },
                "targets": [
                    {"name": "one", "url": f"{sim_base}/one", "auth": "a"},
                    {"name": "two", "url": f"{sim_base}/two", "auth": "b"},
                ],
            }
        )
    )
    return config


async def test_check_exits_0_with_a_row_per_container_when_every_target_answers(
    two_auths: Path, sim: Simulator
) -> None:
    # this replica's shard does not matter: check polls the whole fleet
    code, out, err = await run_check(
        "--config.file", str(two_auths), "--shard", "1", "--total-shards", "2"
    )
    assert code == 0, err
    header = out.splitlines()[0].split()
    assert header[:3] == ["target", "container", "state"]
    one = rows_of(out, "one")
    assert len(one) == 1 and " up " in one[0] and "days" in one[0] and "UP" in one[0]
    two = rows_of(out, "two")
    containers = sim.instance("two").containers
    assert len(two) == len(containers) > 1
    for container in containers:
        assert any(f"{container.hostname}:{container.container_id}" in row for row in two)
    header_full = out.splitlines()[0].split("  ")
    assert [h.strip() for h in header_full if h.strip()][-3:] == ["role", "gateway", "notes"]
    # role from /v1/support and gateway from /v1/health, per container
    assert any("coreapp" in row and " connected" in row for row in two)
    assert any("primary_master" in row for row in two)
    assert out.rstrip().endswith("2 of 2 targets answered.")
    assert "\033" not in out  # a pipe is not a terminal: no colour codes
    for secret in (KEY_A, PASSWORD_B):
        assert secret not in out and secret not in err


async def test_check_exits_1_and_gives_the_reason_in_the_row_of_a_target_that_did_not_answer(
    sim: Simulator, sim_base: str
) -> None:
    sim.add_instance("good", "single")
    sim.add_instance("bad", "single").faults.status = 503
    code, out, _ = await run_check(
        "--target", f"good={sim_base}/good", "--target", f"bad={sim_base}/bad", WA_API_KEY=API_KEY
    )
    assert code == 1
    (bad,) = rows_of(out, "bad")
    assert " down " in bad and "unavailable" in bad
    (good,) = rows_of(out, "good")
    assert " up " in good
    assert "1 of 2 targets answered." in out


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["--target", "x=http://127.0.0.1:1", "--poll.interval", "0.1s"], "--poll.interval"),
        (["--demo"], "--demo"),
        (["--target", "x=http://127.0.0.1:1", "--shard", "2", "--total-shards", "2"], "shard"),
    ],
)
def test_check_exits_2_with_one_line_on_a_bad_setting(
    argv: list[str], names: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [k for k in os.environ if k.startswith("WA_")]:
        monkeypatch.delenv(name)
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1 and names in err, err


def test_check_warns_first_of_a_misspelt_variable_naming_the_right_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [k for k in os.environ if k.startswith("WA_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("WA_TARGET", "x=http://127.0.0.1:1")
    monkeypatch.setenv("WA_API_KEY", API_KEY)
    assert main(["--target", "closed=http://127.0.0.1:1", "--poll.timeout", "2s"]) == 1
    out, err = capsys.readouterr()
    assert err.splitlines()[0] == (
        "whatsapp-support-exporter check: warning: unknown variable WA_TARGET is ignored;"
        " did you mean WA_TARGETS?"
    )
    assert "closed" in out


def test_check_exits_2_naming_the_file_and_place_of_a_bad_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [k for k in os.environ if k.startswith("WA_")]:
        monkeypatch.delenv(name)
    config = tmp_path / "config.yml"
    config.write_text("targets:\n  - {name: x, url: 'http://127.0.0.1:1', auth: nope}\n")
    assert main(["--config.file", str(config)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1
    assert str(config) in err and "targets[0].auth" in err and "nope" in err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


TABLE: list[tuple[str, ...]] = [
    ("ok", "", "up", "30.0 days", "UP", "3.0 GiB", "", "", ""),
    ("bad", "", "down", "", "", "", "", "", "x"),
]


def test_the_table_is_coloured_only_on_a_terminal_without_no_color(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    terminal = Terminal()
    print_table(TABLE, terminal)
    assert "\033[31m" in terminal.getvalue()  # "down" in red
    plain = io.StringIO()
    print_table(TABLE, plain)
    assert "\033" not in plain.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    terminal = Terminal()
    print_table(TABLE, terminal)
    assert "\033" not in terminal.getvalue()
    assert terminal.getvalue() == plain.getvalue()


def test_an_empty_no_color_does_not_turn_colour_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """no-color.org: only a NO_COLOR that is set and not empty means "no colour"."""
    monkeypatch.setenv("NO_COLOR", "")
    terminal = Terminal()
    print_table(TABLE, terminal)
    assert "\033[1m" in terminal.getvalue()
