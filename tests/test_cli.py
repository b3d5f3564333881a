"""The program as an operator runs it: bad settings exit 2 with one line, SIGTERM stops it fast,
and no credential reaches the log even at debug level."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, wait_until

PYTHON = sys.executable
SECRET_URL_PASSWORD = "hunter2-in-url"
SHORT_KEY = "shortkey"
T = "wa=http://127.0.0.1:9"  # a valid target for cases about other settings

P = "invalid setting "
CFG = "--config.file"

# id -> (environment, extra arguments, how the line begins after the program's name)
CASES: dict[str, tuple[dict[str, str], list[str], str]] = {
    "api-key-too-short": ({"WA_TARGETS": T, "WA_API_KEY": SHORT_KEY}, [], P + "WA_API_KEY: "),
    "api-key-too-long": ({"WA_TARGETS": T, "WA_API_KEY": "k" * 129}, [], P + "WA_API_KEY: "),
    "api-key-with-a-newline": (
        {"WA_TARGETS": T, "WA_API_KEY": f"{SHORT_KEY}\n{SHORT_KEY}"},
        [],
        P + "WA_API_KEY: must not contain a newline",
    ),
    "api-key-and-key-file": (
        {"WA_TARGETS": T, "WA_API_KEY": "k" * 20, "WA_API_KEY_FILE": "{tmp}/good.key"},
        [],
        P + "WA_API_KEY_FILE: WA_API_KEY and WA_API_KEY_FILE are both set",
    ),
    "password-and-password-file": (
        {
            "WA_TARGETS": T,
            "WA_USERNAME": "monitor",
            "WA_PASSWORD": "pw",
            "WA_PASSWORD_FILE": "{tmp}/good.key",
        },
        [],
        P + "WA_PASSWORD_FILE: WA_PASSWORD and WA_PASSWORD_FILE are both set",
    ),
    "no-targets": ({}, [], P + "WA_TARGETS (--target): at least one target is required"),
    "wa-target-singular": (
        {"WA_TARGET": "wa=http://127.0.0.1:9"},
        [],
        P + "WA_TARGETS (--target): at least one target is required (or --cloud.waba-id,"
        " --config.file, or"
        " --demo) (WA_TARGET is set: did you mean WA_TARGETS?)",
    ),
    "unknown-flag": (
        {"WA_TARGETS": T},
        ["--poll.intervall", "30s"],
        "unknown flag --poll.intervall; did you mean --poll.interval?",
    ),
    "flag-without-its-value": (
        {"WA_TARGETS": T},
        ["--poll.interval"],
        "invalid flag: argument --poll.interval: expected one argument",
    ),
    "empty-targets": ({"WA_TARGETS": " , "}, [], P + "WA_TARGETS (--target): "),
    "ftp-url": ({"WA_TARGETS": "wa=ftp://wa.example:21"}, [], P + "WA_TARGETS (--target): "),
    "url-without-scheme": ({"WA_TARGETS": "wa.example"}, [], P + "WA_TARGETS (--target): "),
    "credentials-in-url": (
        {"WA_TARGETS": f"wa=https://admin:{SECRET_URL_PASSWORD}@wa.example"},
        [],
        P + "WA_TARGETS (--target): credentials in a target URL are not allowed",
    ),
    "ftp-url-with-credentials": (
        {"WA_TARGETS": f"ftp://admin:{SECRET_URL_PASSWORD}@wa.example"},
        [],
        P + "WA_TARGETS (--target): ",
    ),
    "duplicate-names": (
        {"WA_TARGETS": "a=http://h1:9090,a=http://h2:9090"},
        [],
        P + "WA_TARGETS (--target): target name 'a' is used twice",
    ),
    "duplicate-default-names": (
        {"WA_TARGETS": "http://h1:9090,http://h1:9090/"},
        [],
        P + "WA_TARGETS (--target): target name 'h1:9090' is used twice",
    ),
    "duplicate-names-by-flag": (
        {},
        ["--target", "a=http://h1:1", "--target", "a=http://h2:1"],
        P + "WA_TARGETS (--target): target name 'a' is used twice",
    ),
    "negative-interval": (
        {"WA_TARGETS": T, "WA_POLL_INTERVAL": "-1"},
        [],
        P + "WA_POLL_INTERVAL (--poll.interval): ",
    ),
    "zero-interval": (
        {"WA_TARGETS": T, "WA_POLL_INTERVAL": "0"},
        [],
        P + "WA_POLL_INTERVAL (--poll.interval): ",
    ),
    "sub-second-interval": (
        {"WA_TARGETS": T, "WA_POLL_INTERVAL": "500ms"},
        [],
        P + "WA_POLL_INTERVAL (--poll.interval): must be at least 1s",
    ),
    "infinite-interval": (
        {"WA_TARGETS": T, "WA_POLL_INTERVAL": "inf"},
        [],
        P + "WA_POLL_INTERVAL (--poll.interval): ",
    ),
    "not-a-duration": (
        {"WA_TARGETS": T, "WA_POLL_TIMEOUT": "10 parsecs"},
        [],
        P + "WA_POLL_TIMEOUT (--poll.timeout): is not a duration",
    ),
    "nan-stale-after": (
        {"WA_TARGETS": T, "WA_STALE_AFTER": "nan"},
        [],
        P + "WA_STALE_AFTER (--poll.stale-after): ",
    ),
    "negative-stale-after": (
        {"WA_TARGETS": T, "WA_POLL_STALE_AFTER": "-90"},
        [],
        P + "WA_POLL_STALE_AFTER (--poll.stale-after): ",
    ),
    "stale-before-the-next-poll": (
        {"WA_TARGETS": T, "WA_POLL_INTERVAL": "1m"},
        ["--poll.stale-after", "30s"],
        P + "WA_POLL_STALE_AFTER (--poll.stale-after): is shorter than the poll interval",
    ),
    "negative-max-backoff": (
        {"WA_TARGETS": T, "WA_MAX_BACKOFF": "-1"},
        [],
        P + "WA_MAX_BACKOFF (--poll.max-backoff): ",
    ),
    "negative-interval-flag": (
        {"WA_TARGETS": T},
        ["--poll.interval", "-5"],
        P + "WA_POLL_INTERVAL (--poll.interval): ",
    ),
    "zero-concurrency": (
        {"WA_TARGETS": T, "WA_MAX_CONCURRENCY": "0"},
        [],
        P + "WA_MAX_CONCURRENCY (--poll.max-concurrency): ",
    ),
    "non-numeric-size-cap": (
        {"WA_TARGETS": T, "WA_MAX_RESPONSE_BYTES": "4MiB"},
        [],
        P + "WA_MAX_RESPONSE_BYTES (--poll.max-response-bytes): ",
    ),
    "zero-max-series": (
        {"WA_TARGETS": T},
        ["--poll.max-series", "0"],
        P + "WA_POLL_MAX_SERIES (--poll.max-series): ",
    ),
    "old-and-new-name-disagree": (
        {"WA_TARGETS": T, "WA_MAX_SERIES": "10", "WA_POLL_MAX_SERIES": "20"},
        [],
        P + "WA_MAX_SERIES and WA_POLL_MAX_SERIES: both are set, to different values",
    ),
    "missing-ca-file": (
        {"WA_TARGETS": T, "WA_TLS_CA_FILE": "{tmp}/nope.pem"},
        [],
        P + "WA_TLS_CA_FILE (--tls.ca-file): {tmp}/nope.pem: file not found",
    ),
    "ca-file-not-pem": (
        {"WA_TARGETS": T, "WA_TLS_CA_FILE": "{tmp}/garbage.txt"},
        [],
        P + "WA_TLS_CA_FILE (--tls.ca-file): {tmp}/garbage.txt holds no usable CA certificate",
    ),
    "missing-api-key-file": (
        {"WA_TARGETS": T, "WA_API_KEY_FILE": "{tmp}/nope.key"},
        [],
        P + "WA_API_KEY_FILE: cannot read {tmp}/nope.key: file not found",
    ),
    "short-key-in-file": (
        {"WA_TARGETS": T, "WA_API_KEY_FILE": "{tmp}/short.key"},
        [],
        P + "WA_API_KEY_FILE: {tmp}/short.key holds no usable API key",
    ),
    "missing-password-file": (
        {"WA_TARGETS": T, "WA_USERNAME": "monitor", "WA_PASSWORD_FILE": "{tmp}/nope.pw"},
        [],
        P + "WA_PASSWORD_FILE: ",
    ),
    "username-without-password": (
        {"WA_TARGETS": T, "WA_USERNAME": "monitor"},
        [],
        P + "WA_USERNAME: WA_USERNAME needs WA_PASSWORD or WA_PASSWORD_FILE",
    ),
    "bad-listen-address": (
        {"WA_TARGETS": T, "WA_LISTEN_ADDRESS": "everywhere"},
        [],
        P + "WA_LISTEN_ADDRESS (--web.listen-address): ",
    ),
    "unroutable-telemetry-path": (
        {"WA_TARGETS": T, "WA_WEB_TELEMETRY_PATH": "/{x"},
        [],
        P + "WA_WEB_TELEMETRY_PATH (--web.telemetry-path): ",
    ),
    "bad-log-level": (
        {"WA_TARGETS": T, "WA_LOG_LEVEL": "loud"},
        [],
        P + "WA_LOG_LEVEL (--log.level): ",
    ),
    "bad-tls-verify": (
        {"WA_TARGETS": T, "WA_TLS_VERIFY": "perhaps"},
        [],
        P + "WA_TLS_VERIFY (--tls.verify): ",
    ),
    "shard-not-below-total": (
        {"WA_TARGETS": T, "WA_SHARD": "wa-exporter-3", "WA_TOTAL_SHARDS": "3"},
        [],
        P + "WA_SHARD (--shard): must be below the number of shards (3)",
    ),
    "shard-not-a-pod-name": (
        {"WA_TARGETS": T},
        ["--shard", "wa-exporter"],
        P + "WA_SHARD (--shard): ",
    ),
    "missing-web-config": (
        {"WA_TARGETS": T, "WA_WEB_CONFIG_FILE": "{tmp}/nope.yml"},
        [],
        P + "WA_WEB_CONFIG_FILE (--web.config.file): ",
    ),
    "web-config-unknown-key": (
        {"WA_TARGETS": T},
        ["--web.config.file", "{tmp}/web.yml"],
        P + "WA_WEB_CONFIG_FILE (--web.config.file): ",
    ),
    "missing-config-file": (
        {},
        [CFG, "{tmp}/nope.yml"],
        P + "WA_CONFIG_FILE (--config.file): {tmp}/nope.yml: file not found",
    ),
    "config-unknown-auth": (
        {},
        [CFG, "{tmp}/unknown-auth.yml"],
        '{tmp}/unknown-auth.yml: targets[1].auth: no auth named "prdo"',
    ),
    "config-unreadable-secret": (
        {"WA_CONFIG_FILE": "{tmp}/missing-secret.yml"},
        [],
        "{tmp}/missing-secret.yml: auths.prod.api_key_file: cannot read {tmp}/nope.key",
    ),
    "config-duplicate-of-wa-targets": (
        {"WA_TARGETS": T, "WA_CONFIG_FILE": "{tmp}/duplicate.yml"},
        [],
        '{tmp}/duplicate.yml: targets[0]: target name "wa" is also defined at WA_TARGETS',
    ),
    "config-secret-in-a-bad-key": (
        {},
        [CFG, "{tmp}/inline-short-key.yml"],
        "{tmp}/inline-short-key.yml: auths.prod.api_key: must be 12 to 128 characters",
    ),
    "target-file-bad-url": (
        {},
        [CFG, "{tmp}/with-target-files.yml"],
        "{tmp}/targets/bad.yml: [0].targets[0]: 'wa.example' is not an http:// or https://",
    ),
}

CONFIG_FILES = {
    "unknown-auth.yml": "auths: {prod: {api_key_file: good.key}}\n"
    "targets: [{url: 'https://a.example', auth: prod}, {url: 'https://b.example', auth: prdo}]\n",
    "missing-secret.yml": "auths: {prod: {api_key_file: nope.key}}\n"
    "targets: [{url: 'https://a.example', auth: prod}]\n",
    "duplicate.yml": "targets: [{name: wa, url: 'https://a.example'}]\n",
    "inline-short-key.yml": f"auths: {{prod: {{api_key: {SHORT_KEY}}}}}\n"
    "targets: [{url: 'https://a.example', auth: prod}]\n",
    "with-target-files.yml": "target_files: [targets/*.yml]\n",
    "targets/bad.yml": "- targets: [wa.example]\n",
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
    (tmp / "good.key").write_text("k" * 20 + "\n")
    (tmp / "web.yml").write_text("basic_auth: {}\n")
    (tmp / "targets").mkdir()
    for name, text in CONFIG_FILES.items():
        (tmp / name).write_text(text)
    return tmp


def prepared(case: str, tmp: Path) -> tuple[dict[str, str], list[str]]:
    env, args, _ = CASES[case]
    if "WA_LISTEN_ADDRESS" not in env:
        env = {"WA_LISTEN_ADDRESS": "127.0.0.1:0", **env}
    return (
        {k: v.replace("{tmp}", str(tmp)) for k, v in env.items()},
        [a.replace("{tmp}", str(tmp)) for a in args],
    )


def check_line(code: int | str | None, stderr: str, stdout: str, case: str, tmp: Path) -> None:
    lines = stderr.strip().splitlines()
    assert code == 2, stderr
    assert "Traceback" not in stderr
    assert len(lines) == 1, stderr
    begins = "whatsapp-support-exporter: " + CASES[case][2].replace("{tmp}", str(tmp))
    assert lines[0].startswith(begins), lines[0]
    assert SECRET_URL_PASSWORD not in stderr
    assert SHORT_KEY not in stderr
    assert stdout == ""


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_setting_exits_2_with_one_line_naming_it(
    files: Path, case: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In process (a subprocess each would take seconds); the real process is checked below."""
    import whatsapp_support_exporter.cli.main as entry

    env, args = prepared(case, files)
    for key in os.environ:
        if key.startswith("WA_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    def accepted(work: Coroutine[Any, Any, None]) -> None:
        work.close()
        raise AssertionError(f"the settings of {case} were accepted")

    # Logging is configured before the fleet is loaded; keep the test process's own logging.
    monkeypatch.setattr(entry, "setup_logging", lambda *_: None)
    monkeypatch.setattr(entry, "run", accepted)
    with pytest.raises(SystemExit) as exited:
        entry.main(args)
    captured = capsys.readouterr()
    check_line(exited.value.code, captured.err, captured.out, case, files)


PROCESS_CASES = [
    "no-targets",
    "unknown-flag",
    "api-key-too-short",
    "ca-file-not-pem",
    "web-config-unknown-key",
    "sub-second-interval",
    "config-unknown-auth",
]


def test_the_real_process_exits_2_with_one_line_and_no_traceback(files: Path) -> None:
    procs = {}
    for case in PROCESS_CASES:  # started together: each costs the interpreter's start-up
        env, args = prepared(case, files)
        procs[case] = subprocess.Popen(
            [PYTHON, "-m", "whatsapp_support_exporter", *args],
            env=clean_env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    for case, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=30)  # all start at once on a small machine
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        check_line(proc.returncode, err, out, case, files)


# -- running processes ------------------------------------------------------------------------


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, ""
    except OSError:
        return 0, ""


@pytest.fixture
def hanging_upstream() -> Iterator[socket.socket]:
    """A port that accepts connections (the kernel does) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock


def start_exporter(args: list[str], **env: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "whatsapp_support_exporter",
            "--web.listen-address",
            f"127.0.0.1:{port}",
            *args,
        ],
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
    proc, base = start_exporter(["--demo", "--poll.interval", "1s"])
    wait_until(lambda: 'whatsapp_up{target="cluster"} 1' in get(f"{base}/metrics")[1])
    code, took, err = stop(proc)
    assert code == 0, err
    assert took < 5.0
    assert "Traceback" not in err


def test_the_demo_warns_first_of_a_misspelt_variable_naming_the_right_one() -> None:
    proc, _ = start_exporter(["--demo"], WA_TARGET="wa=http://127.0.0.1:9")
    code, _, err = stop(proc)
    assert code == 0, err
    lines = err.splitlines()
    assert "unknown variable WA_TARGET is ignored; did you mean WA_TARGETS?" in lines[0], err


def test_the_web_config_headers_are_sent_by_the_running_exporter(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text("http_server_config:\n  headers: {X-Frame-Options: deny}\n")
    proc, base = start_exporter(["--web.config.file", str(web)], WA_TARGETS=T)
    try:
        for path in ("/-/healthy", "/metrics", "/"):
            with urllib.request.urlopen(base + path, timeout=2) as resp:
                assert resp.headers["X-Frame-Options"] == "deny", path
    finally:
        stop(proc)


def test_help_names_the_check_command_and_the_credential_variables() -> None:
    out = subprocess.run(
        [PYTHON, "-m", "whatsapp_support_exporter", "--help"],
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith("usage: whatsapp-support-exporter [-h]")
    assert "\n  check  " in out
    for variable in ("WA_API_KEY", "WA_API_KEY_FILE", "WA_USERNAME", "WA_PASSWORD_FILE"):
        assert f"\n  {variable} " in out, variable


def test_check_help_is_the_usage_of_check() -> None:
    out = subprocess.run(
        [PYTHON, "-m", "whatsapp_support_exporter", "check", "--help"],
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith("usage: whatsapp-support-exporter check [-h]")
    assert "poll every target once" in out and "Exit 0 when every target answered" in out
    assert "--config.file FILE" in out


def test_sigterm_cancels_a_poll_hanging_on_the_upstream(hanging_upstream: socket.socket) -> None:
    url = f"http://127.0.0.1:{hanging_upstream.getsockname()[1]}"
    proc, base = start_exporter(
        ["--poll.timeout", "60", "--poll.interval", "1s"], WA_TARGETS=f"stuck={url}"
    )
    # the first poll (within the first second) connects, sends its request, and hangs
    assert select.select([hanging_upstream], [], [], 5)[0], "no poll reached the upstream"
    assert 'whatsapp_up{target="stuck"} 0' in get(f"{base}/metrics")[1]
    code, took, err = stop(proc)
    assert code == 0, err
    assert took < 5.0
    assert "Traceback" not in err


@pytest.fixture
def simulator() -> Iterator[tuple[str, dict[str, str]]]:
    """``python -m whatsapp_api_simulator`` on a free port: its targets and the credentials it takes."""
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
            "whatsapp_api_simulator",
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
        ["--log.level", "debug", "--poll.interval", "1s"],
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


SIDECAR_MODULES = """
import asyncio, os, signal, sys
import whatsapp_support_exporter.cli.main as m

start = m.start_server


async def listening(*args, **kwargs):
    runner = await start(*args, **kwargs)
    loaded = [n for n in ("yaml", "bcrypt", "whatsapp_api_simulator") if n in sys.modules]
    print("loaded:", *loaded, flush=True)
    asyncio.get_running_loop().call_soon(os.kill, os.getpid(), signal.SIGTERM)
    return runner


m.start_server = listening
m.main()
"""


def test_a_sidecar_configured_by_its_environment_loads_no_yaml_bcrypt_or_simulator() -> None:
    """A sidecar pays in memory only for what it uses: the configuration-file and web-config
    code (YAML, bcrypt) and the demo's simulator are imported only when configured."""
    env = clean_env(
        WA_TARGETS=T,
        WA_API_KEY="a-sidecar-key-0123456789",
        WA_WEB_LISTEN_ADDRESS=f"127.0.0.1:{free_port()}",
    )
    done = subprocess.run(
        [PYTHON, "-c", SIDECAR_MODULES], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "loaded:", done.stdout
