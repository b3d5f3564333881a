"""The program as an operator runs it: bad settings exit 2 with one line, SIGTERM stops it fast,
and no credential reaches the log even at debug level."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PYTHON = sys.executable
SECRET_URL_PASSWORD = "hunter2-in-url"
SHORT_KEY = "shortkey"
T = "wa=http://127.0.0.1:9"  # a valid target for cases about other settings

# id -> (environment, extra arguments, the setting the line must name)
CASES: dict[str, tuple[dict[str, str], list[str], str]] = {
    "api-key-too-short": ({"WA_TARGETS": T, "WA_API_KEY": SHORT_KEY}, [], "WA_API_KEY"),
    "api-key-too-long": ({"WA_TARGETS": T, "WA_API_KEY": "k" * 129}, [], "WA_API_KEY"),
    "no-targets": ({}, [], "WA_TARGETS"),
    "empty-targets": ({"WA_TARGETS": " , "}, [], "WA_TARGETS"),
    "ftp-url": ({"WA_TARGETS": "wa=ftp://wa.example:21"}, [], "WA_TARGETS"),
    "url-without-scheme": ({"WA_TARGETS": "wa.example"}, [], "WA_TARGETS"),
    "credentials-in-url": (
        {"WA_TARGETS": f"wa=https://admin:{SECRET_URL_PASSWORD}@wa.example"},
        [],
        "WA_TARGETS",
    ),
    "ftp-url-with-credentials": (
        {"WA_TARGETS": f"ftp://admin:{SECRET_URL_PASSWORD}@wa.example"},
        [],
        "WA_TARGETS",
    ),
    "duplicate-names": (
        {"WA_TARGETS": "a=http://h1:9090,a=http://h2:9090"},
        [],
        "WA_TARGETS",
    ),
    "duplicate-default-names": (
        {"WA_TARGETS": "http://h1:9090,http://h1:9090/"},
        [],
        "WA_TARGETS",
    ),
    "duplicate-names-by-flag": (
        {},
        ["--target", "a=http://h1:1", "--target", "a=http://h2:1"],
        "WA_TARGETS",
    ),
    "negative-interval": ({"WA_TARGETS": T, "WA_POLL_INTERVAL": "-1"}, [], "WA_POLL_INTERVAL"),
    "zero-interval": ({"WA_TARGETS": T, "WA_POLL_INTERVAL": "0"}, [], "WA_POLL_INTERVAL"),
    "infinite-interval": ({"WA_TARGETS": T, "WA_POLL_INTERVAL": "inf"}, [], "WA_POLL_INTERVAL"),
    "non-numeric-timeout": ({"WA_TARGETS": T, "WA_POLL_TIMEOUT": "10s"}, [], "WA_POLL_TIMEOUT"),
    "nan-stale-after": ({"WA_TARGETS": T, "WA_STALE_AFTER": "nan"}, [], "WA_STALE_AFTER"),
    "negative-stale-after": ({"WA_TARGETS": T, "WA_STALE_AFTER": "-90"}, [], "WA_STALE_AFTER"),
    "negative-max-backoff": ({"WA_TARGETS": T, "WA_MAX_BACKOFF": "-1"}, [], "WA_MAX_BACKOFF"),
    "negative-interval-flag": (
        {"WA_TARGETS": T},
        ["--poll.interval", "-5"],
        "WA_POLL_INTERVAL (--poll.interval)",
    ),
    "zero-concurrency": ({"WA_TARGETS": T, "WA_MAX_CONCURRENCY": "0"}, [], "WA_MAX_CONCURRENCY"),
    "non-numeric-size-cap": (
        {"WA_TARGETS": T, "WA_MAX_RESPONSE_BYTES": "4MiB"},
        [],
        "WA_MAX_RESPONSE_BYTES",
    ),
    "missing-ca-file": (
        {"WA_TARGETS": T, "WA_TLS_CA_FILE": "{tmp}/nope.pem"},
        [],
        "WA_TLS_CA_FILE",
    ),
    "ca-file-not-pem": (
        {"WA_TARGETS": T, "WA_TLS_CA_FILE": "{tmp}/garbage.txt"},
        [],
        "WA_TLS_CA_FILE",
    ),
    "missing-api-key-file": (
        {"WA_TARGETS": T, "WA_API_KEY_FILE": "{tmp}/nope.key"},
        [],
        "WA_API_KEY_FILE",
    ),
    "short-key-in-file": (
        {"WA_TARGETS": T, "WA_API_KEY_FILE": "{tmp}/short.key"},
        [],
        "WA_API_KEY_FILE",
    ),
    "missing-password-file": (
        {"WA_TARGETS": T, "WA_USERNAME": "monitor", "WA_PASSWORD_FILE": "{tmp}/nope.pw"},
        [],
        "WA_PASSWORD_FILE",
    ),
    "username-without-password": (
        {"WA_TARGETS": T, "WA_USERNAME": "monitor"},
        [],
        "WA_USERNAME",
    ),
    "bad-listen-address": (
        {"WA_TARGETS": T, "WA_LISTEN_ADDRESS": "everywhere"},
        [],
        "WA_LISTEN_ADDRESS",
    ),
    "bad-log-level": ({"WA_TARGETS": T, "WA_LOG_LEVEL": "loud"}, [], "WA_LOG_LEVEL"),
    "bad-tls-verify": ({"WA_TARGETS": T, "WA_TLS_VERIFY": "perhaps"}, [], "WA_TLS_VERIFY"),
    "missing-web-config": (
        {"WA_TARGETS": T, "WA_WEB_CONFIG_FILE": "{tmp}/nope.yml"},
        [],
        "WA_WEB_CONFIG_FILE",
    ),
    "web-config-unknown-key": (
        {"WA_TARGETS": T},
        ["--web.config.file", "{tmp}/web.yml"],
        "WA_WEB_CONFIG_FILE",
    ),
}


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("cli")
    (tmp / "garbage.txt").write_text("this is not a certificate\n")
    (tmp / "short.key").write_text(SHORT_KEY + "\n")
    (tmp / "web.yml").write_text("basic_auth: {}\n")
    return tmp


def prepared(case: str, tmp: Path) -> tuple[dict[str, str], list[str]]:
    env, args, _ = CASES[case]
    env = {"WA_LISTEN_ADDRESS": "127.0.0.1:0", **env}
    return (
        {k: v.replace("{tmp}", str(tmp)) for k, v in env.items()},
        [a.replace("{tmp}", str(tmp)) for a in args],
    )


def check_line(code: int | str | None, stderr: str, stdout: str, case: str) -> None:
    lines = stderr.strip().splitlines()
    assert code == 2, stderr
    assert "Traceback" not in stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("whatsapp-support-exporter: invalid setting ")
    assert CASES[case][2] in lines[0]
    assert SECRET_URL_PASSWORD not in stderr
    assert SHORT_KEY not in stderr
    assert stdout == ""


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_setting_exits_2_with_one_line_naming_it(
    files: Path, case: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In process (a subprocess each would take seconds); the real process is checked below."""
    import exporter.__main__ as entry

    env, args = prepared(case, files)
    for key in os.environ:
        if key.startswith("WA_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    def accepted(*_: Any) -> None:
        raise AssertionError(f"the settings of {case} were accepted")

    monkeypatch.setattr(entry, "setup_logging", accepted)
    with pytest.raises(SystemExit) as exited:
        entry.main(args)
    captured = capsys.readouterr()
    check_line(exited.value.code, captured.err, captured.out, case)


PROCESS_CASES = ["no-targets", "api-key-too-short", "ca-file-not-pem", "web-config-unknown-key"]


def test_the_real_process_exits_2_with_one_line_and_no_traceback(files: Path) -> None:
    procs = {}
    for case in PROCESS_CASES:  # started together: each costs the interpreter's start-up
        env, args = prepared(case, files)
        procs[case] = subprocess.Popen(
            [PYTHON, "-m", "exporter", *args],
            env=clean_env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    for case, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        check_line(proc.returncode, err, out, case)


# -- running processes ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, ""
    except OSError:
        return 0, ""


def wait_until(predicate: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


@pytest.fixture
def hanging_upstream() -> Iterator[str]:
    """A port that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def start_exporter(args: list[str], **env: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    proc = subprocess.Popen(
        [PYTHON, "-m", "exporter", "--web.listen-address", f"127.0.0.1:{port}", *args],
        env=clean_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: proc.poll() is not None or get(f"{base}/-/ready")[0] == 200)
    except AssertionError:
        proc.kill()
        raise
    assert proc.poll() is None, proc.communicate()[1]
    return proc, base


def stop(proc: subprocess.Popen[str]) -> tuple[int, float, str]:
    """SIGTERM; the exit code, how long it took, and stderr."""
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        return -1, time.monotonic() - started, err
    return proc.returncode, time.monotonic() - started, err


def test_sigterm_stops_the_demo_quickly_and_cleanly() -> None:
    proc, base = start_exporter(["--demo", "--poll.interval", "0.2"])
    wait_until(lambda: 'whatsapp_up{target="cluster"} 1' in get(f"{base}/metrics")[1])
    code, took, err = stop(proc)
    assert code == 0, err
    assert took < 5.0
    assert "Traceback" not in err


def test_sigterm_cancels_a_poll_hanging_on_the_upstream(hanging_upstream: str) -> None:
    proc, base = start_exporter(
        ["--poll.timeout", "60", "--poll.interval", "0.05"], WA_TARGETS=f"stuck={hanging_upstream}"
    )
    time.sleep(0.3)  # the first poll starts within the first interval, then hangs
    assert 'whatsapp_up{target="stuck"} 0' in get(f"{base}/metrics")[1]
    code, took, err = stop(proc)
    assert code == 0, err
    assert took < 5.0
    assert "Traceback" not in err


@pytest.fixture
def simulator() -> Iterator[tuple[str, dict[str, str]]]:
    """``python -m exporter.simulator`` on a free port: its targets and the credentials it takes."""
    creds = {
        "key": "sim-side-api-key-7d41a8c5",
        "user": "monitor",
        "password": "pw-4e9b0f1d2c3a",
    }
    port = free_port()
    proc = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "exporter.simulator",
            "--listen",
            f"127.0.0.1:{port}",
            "--api-key",
            creds["key"],
            "--username",
            creds["user"],
            "--password",
            creds["password"],
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    targets = proc.stdout.readline().strip()
    try:
        wait_until(lambda: get(f"http://127.0.0.1:{port}/v1/health")[0] == 401)
        yield targets, creds
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def test_no_credential_reaches_the_log_even_at_debug_level(
    simulator: tuple[str, dict[str, str]],
) -> None:
    targets, creds = simulator
    # The exporter's key is not the simulator's: it is tried, rejected, and the login takes over,
    # so the key, the password and the token all pass through the exporter.
    wrong_key = "exporter-side-key-93c1f0aa"
    proc, base = start_exporter(
        ["--log.level", "debug", "--poll.interval", "0.1"],
        WA_TARGETS=targets,
        WA_API_KEY=wrong_key,
        WA_USERNAME=creds["user"],
        WA_PASSWORD=creds["password"],
    )
    wait_until(lambda: 'whatsapp_up{target="single-0"} 1' in get(f"{base}/metrics")[1])
    landing = get(f"{base}/")[1]
    code, _, err = stop(proc)
    assert code == 0, err
    assert "logged in" in err  # the debug level was on
    for secret in (wrong_key, creds["key"], creds["password"]):
        assert secret not in err
        assert secret not in landing
    for scheme in ("Bearer ", "Basic ", "Apikey "):
        assert scheme not in err
