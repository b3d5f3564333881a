"""Settings from the environment, flags and files, as an operator writes them."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import pytest
from pydantic import SecretStr

from whatsapp_support_exporter.cli.settings import (
    SettingsError,
    build_parser,
    load_settings,
    setting_warnings,
)
from whatsapp_support_exporter.fleet.options import OPTIONS
from whatsapp_support_exporter.upstream.onprem.target import (
    Credentials,
    SecretFileError,
    Target,
    TLSOptions,
    file_problem,
)

KEY = "k3y-from-a-mounted-secret"
T = "wa=https://wa.example"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("WA_"):
            monkeypatch.delenv(name)


def refused(argv: list[str] | None = None, /, **env: str) -> str:
    """The one line a refused configuration gets."""
    for name, value in env.items():
        os.environ[name] = value
    try:
        with pytest.raises(SettingsError) as caught:
            load_settings(argv or [])
    finally:
        for name in env:
            del os.environ[name]
    line = str(caught.value)
    assert "\n" not in line
    return line


# -- targets ----------------------------------------------------------------------------------


def test_targets_from_the_environment_with_and_without_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "WA_TARGETS", "prod=https://wa.example:9090/, https://10.0.0.7:443,http://[::1]:8080/prefix"
    )
    settings = load_settings([])
    assert settings.targets == [
        Target("prod", "https://wa.example:9090"),
        Target("10.0.0.7:443", "https://10.0.0.7"),
        Target("[::1]:8080", "http://[::1]:8080/prefix"),
    ]


def test_a_url_pasted_with_the_endpoint_is_accepted_without_it_and_warned_about(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WA_TARGETS", "a=https://wa.example:9090/v1/support,b=https://b.example/")
    monkeypatch.setenv("WA_API_KEY", KEY)
    settings = load_settings([])
    assert [t.url for t in settings.targets] == ["https://wa.example:9090", "https://b.example"]
    warnings = setting_warnings(settings, os.environ)
    assert warnings == [
        "1 target URL ended in /v1/support, which was stripped (give the base URL): a"
    ]


def test_credentials_in_a_target_url_are_refused_without_showing_them() -> None:
    line = refused(WA_TARGETS="https://admin:s3cret-pw@wa.example")
    assert line.startswith("invalid setting WA_TARGETS (--target): credentials in a target URL")
    assert "s3cret-pw" not in line


# -- defaults, names and aliases --------------------------------------------------------------


def test_defaults_match_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WA_TARGETS", "https://wa.example")
    settings = load_settings([])
    assert settings.poll_interval == 30
    assert settings.poll_timeout == 10
    assert settings.stale_after_seconds == 90
    assert settings.max_concurrency == 32
    assert settings.max_response_bytes == 4 * 1024 * 1024
    assert settings.max_backoff == 300
    assert settings.max_series == 10000
    assert settings.listen_address == ":10042"
    assert settings.telemetry_path == "/metrics"
    assert settings.tls() == TLSOptions(verify=True, ca_file=None)
    assert (settings.log_level, settings.log_format) == ("info", "logfmt")
    assert (settings.shard, settings.total_shards) == (0, 1)
    assert settings.collector_health and settings.collector_shards
    assert not settings.web_enable_lifecycle and not settings.demo
    assert settings.config_file is None
    assert settings.credentials() == Credentials()


def test_a_flag_wins_over_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WA_TARGETS", "a=https://a.example")
    monkeypatch.setenv("WA_POLL_INTERVAL", "60")
    monkeypatch.setenv("WA_TLS_VERIFY", "true")
    settings = load_settings(
        ["--poll.interval", "15", "--target", "b=https://b.example", "--no-tls.verify"]
    )
    assert settings.poll_interval == 15
    assert [t.name for t in settings.targets] == ["b"]
    assert settings.tls_verify is False
    assert settings.stale_after_seconds == 45


# (new name, 0.1 name, value, field, parsed)
ALIASES = [
    ("WA_WEB_LISTEN_ADDRESS", "WA_LISTEN_ADDRESS", "127.0.0.1:9999", "listen_address", None),
    ("WA_WEB_TELEMETRY_PATH", "WA_TELEMETRY_PATH", "/m", "telemetry_path", None),
    ("WA_POLL_STALE_AFTER", "WA_STALE_AFTER", "120", "stale_after", 120.0),
    ("WA_POLL_MAX_CONCURRENCY", "WA_MAX_CONCURRENCY", "4", "max_concurrency", 4),
    ("WA_POLL_MAX_RESPONSE_BYTES", "WA_MAX_RESPONSE_BYTES", "2048", "max_response_bytes", 2048),
    ("WA_POLL_MAX_BACKOFF", "WA_MAX_BACKOFF", "60", "max_backoff", 60.0),
    ("WA_POLL_MAX_SERIES", "WA_MAX_SERIES", "500", "max_series", 500),
]


@pytest.mark.parametrize(("new", "old", "value", "field", "parsed"), ALIASES)
@pytest.mark.parametrize("which", ["new", "old"])
def test_both_the_flag_derived_and_the_0_1_variable_names_are_read(
    monkeypatch: pytest.MonkeyPatch,
    new: str,
    old: str,
    value: str,
    field: str,
    parsed: object,
    which: str,
) -> None:
    monkeypatch.setenv("WA_TARGETS", T)
    monkeypatch.setenv(new if which == "new" else old, value)
    assert getattr(load_settings([]), field) == (value if parsed is None else parsed)


def test_variables_are_read_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("wa_targets", T)
    monkeypatch.setenv("Wa_Poll_Max_Series", "77")
    assert load_settings([]).max_series == 77


def test_the_new_and_the_old_name_with_different_values_are_refused() -> None:
    line = refused(WA_TARGETS=T, WA_LISTEN_ADDRESS=":1", WA_WEB_LISTEN_ADDRESS=":2")
    assert line == (
        "invalid setting WA_LISTEN_ADDRESS and WA_WEB_LISTEN_ADDRESS: both are set, to"
        " different values; keep one"
    )


def test_the_new_and_the_old_name_with_the_same_value_are_fine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WA_TARGETS", T)
    monkeypatch.setenv("WA_LISTEN_ADDRESS", ":2")
    monkeypatch.setenv("WA_WEB_LISTEN_ADDRESS", ":2")
    assert load_settings([]).listen_address == ":2"


def test_an_error_names_the_variable_the_operator_set() -> None:
    assert refused(WA_TARGETS=T, WA_STALE_AFTER="nan").startswith(
        "invalid setting WA_STALE_AFTER (--poll.stale-after): "
    )
    assert refused(WA_TARGETS=T, WA_POLL_STALE_AFTER="nan").startswith(
        "invalid setting WA_POLL_STALE_AFTER (--poll.stale-after): "
    )
    assert refused(["--poll.stale-after", "nan"], WA_TARGETS=T).startswith(
        "invalid setting WA_POLL_STALE_AFTER (--poll.stale-after): "
    )


def help_blocks() -> dict[str, str]:
    """--help as the operator reads it: each option's whole entry, by its first flag."""
    blocks: dict[str, str] = {}
    current = ""
    for line in build_parser().format_help().splitlines():
        match = re.match(r"  (--[\w.-]+)", line)
        if match:
            current = match.group(1)
            blocks[current] = line
        elif current and line.startswith("    "):
            blocks[current] += " " + line.strip()
    return blocks


def test_help_shows_the_variable_beside_each_flag() -> None:
    blocks = help_blocks()
    assert "[WA_TARGETS" in blocks["--target"]
    for option in OPTIONS.values():
        if option.flag is not None:
            assert f"[{option.variable}" in blocks[option.flag], blocks.get(option.flag)
    assert "[WA_POLL_INTERVAL, default 30s]" in blocks["--poll.interval"]
    assert "[WA_WEB_LISTEN_ADDRESS, default :10042]" in blocks["--web.listen-address"]
    assert "--no-collector.health" in blocks["--collector.health"]


@pytest.mark.parametrize(
    "argv",
    [
        ["--config.file", "{cfg}"],
        ["--shard", "wa-exporter-1", "--total-shards", "3"],
        ["--no-collector.health", "--no-collector.shards"],
        ["--poll.max-series", "10"],
        ["--web.enable-lifecycle"],
    ],
)
def test_the_new_flags_are_taken(tmp_path: Path, argv: list[str]) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text("targets: []\n")
    settings = load_settings([a.replace("{cfg}", str(cfg)) for a in argv] + ["--target", T])
    taken = {
        "--config.file": settings.config_file == cfg,
        "--shard": (settings.shard, settings.total_shards) == (1, 3),
        "--no-collector.health": not settings.collector_health and not settings.collector_shards,
        "--poll.max-series": settings.max_series == 10,
        "--web.enable-lifecycle": settings.web_enable_lifecycle,
    }
    assert taken[argv[0]]


# -- values -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 30.0),
        ("2.5", 2.5),
        ("30s", 30.0),
        ("1m30s", 90.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1500ms", 1.5),
        ("1m500ms", 60.5),
    ],
)
def test_durations_take_seconds_or_the_prometheus_form(
    monkeypatch: pytest.MonkeyPatch, text: str, seconds: float
) -> None:
    monkeypatch.setenv("WA_TARGETS", T)
    monkeypatch.setenv("WA_POLL_TIMEOUT", text)
    monkeypatch.setenv("WA_POLL_MAX_BACKOFF", text)
    settings = load_settings(["--poll.interval", text, "--poll.stale-after", text])
    assert settings.poll_timeout == settings.max_backoff == seconds
    assert settings.poll_interval == settings.stale_after_seconds == seconds


@pytest.mark.parametrize("text", ["10 parsecs", "1x", "ms", "1s30m", "", "-5s", "inf"])
def test_anything_else_is_not_a_duration(text: str) -> None:
    assert refused(WA_TARGETS=T, WA_POLL_TIMEOUT=text).startswith(
        "invalid setting WA_POLL_TIMEOUT (--poll.timeout): "
    )


@pytest.mark.parametrize(
    ("text", "level"), [("DEBUG", "debug"), ("Warn", "warn"), ("warning", "warn")]
)
def test_log_levels_in_any_case(monkeypatch: pytest.MonkeyPatch, text: str, level: str) -> None:
    monkeypatch.setenv("WA_TARGETS", T)
    assert load_settings(["--log.level", text, "--log.format", "JSON"]).log_level == level


def test_polls_faster_than_once_a_second_are_refused() -> None:
    line = refused(["--poll.interval", "500ms"], WA_TARGETS=T)
    assert line.startswith(
        "invalid setting WA_POLL_INTERVAL (--poll.interval): must be at least 1s"
    )
    assert load_settings(["--poll.interval", "1s", "--target", T]).poll_interval == 1


def test_data_withdrawn_before_the_next_poll_is_refused() -> None:
    line = refused(WA_TARGETS=T, WA_POLL_INTERVAL="1m", WA_POLL_STALE_AFTER="30s")
    assert line.startswith(
        "invalid setting WA_POLL_STALE_AFTER (--poll.stale-after): is shorter than the poll"
    )


@pytest.mark.parametrize("path", ["/{x", "/{x}", "metrics", "/sd", "/-/reload", "/", "/m?x=1"])
def test_a_metrics_path_the_server_cannot_serve_is_refused(path: str) -> None:
    assert refused(WA_TARGETS=T, WA_WEB_TELEMETRY_PATH=path).startswith(
        "invalid setting WA_WEB_TELEMETRY_PATH (--web.telemetry-path): "
    )


def test_a_shard_from_a_statefulset_pod_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WA_TARGETS", T)
    monkeypatch.setenv("WA_SHARD", "whatsapp-exporter-2")
    monkeypatch.setenv("WA_TOTAL_SHARDS", "3")
    assert load_settings([]).shard == 2


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"WA_SHARD": "3", "WA_TOTAL_SHARDS": "3"}, "WA_SHARD (--shard): must be below"),
        ({"WA_SHARD": "wa-exporter"}, "WA_SHARD (--shard): "),
        ({"WA_TOTAL_SHARDS": "0"}, "WA_TOTAL_SHARDS (--total-shards): "),
    ],
)
def test_impossible_shards_are_refused(env: dict[str, str], named: str) -> None:
    assert refused(WA_TARGETS=T, **env).startswith(f"invalid setting {named}")


def test_a_singular_wa_target_is_named_with_the_variable_meant() -> None:
    assert refused(WA_TARGET=T) == (
        "invalid setting WA_TARGETS (--target): at least one target is required (or"
        " --cloud.waba-id, --config.file, or --demo) (WA_TARGET is set: did you mean"
        " WA_TARGETS?)"
    )


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["--poll.intervall", "30s"],
            "unknown flag --poll.intervall; did you mean --poll.interval?",
        ),
        (
            ["--target=" + T, "--web.listen-adress=:1"],
            "unknown flag --web.listen-adress; did you mean --web.listen-address?",
        ),
        (
            ["--no-collector.healht"],
            "unknown flag --no-collector.healht; did you mean --no-collector.health?",
        ),
        (["--frobnicate"], "unknown flag --frobnicate; see --help"),
        (["--poll.int", "30s"], "unknown flag --poll.int; did you mean --poll.interval?"),
        (["stray"], "invalid flag: unexpected argument 'stray'"),
    ],
)
def test_an_unknown_flag_is_one_line_naming_the_nearest(argv: list[str], line: str) -> None:
    assert refused(argv, WA_TARGETS=T) == line


def test_two_unnamed_targets_on_one_host_are_told_to_take_names() -> None:
    line = refused(WA_TARGETS="https://wa.example/eu,https://wa.example/us")
    assert line == (
        "invalid setting WA_TARGETS (--target): target name 'wa.example:443' is used twice"
        " (a name defaults to host:port: name each target, name=url or name:)"
    )


@pytest.mark.parametrize("value", ["nope", "2", "enabled"])
def test_a_switch_that_is_neither_true_nor_false_lists_the_accepted_values(value: str) -> None:
    assert refused(WA_TARGETS=T, WA_TLS_VERIFY=value) == (
        "invalid setting WA_TLS_VERIFY (--tls.verify): must be true or false (also 1/0,"
        " yes/no, on/off)"
    )


def test_file_errors_say_what_is_wrong_not_a_class_name(tmp_path: Path) -> None:
    assert refused(WA_TARGETS=T, WA_CONFIG_FILE=str(tmp_path / "nope.yml")) == (
        f"invalid setting WA_CONFIG_FILE (--config.file): {tmp_path}/nope.yml: file not found"
    )
    assert refused(WA_TARGETS=T, WA_API_KEY_FILE=str(tmp_path)) == (
        f"invalid setting WA_API_KEY_FILE: cannot read {tmp_path}: is a directory, not a file"
    )
    # the tests run as root, which reads any file: the mapping itself
    assert file_problem(PermissionError(errno.EACCES, "Permission denied")) == "permission denied"
    assert file_problem(OSError(errno.EIO, "Input/output error")) == "input/output error"


# -- credentials ------------------------------------------------------------------------------


def test_secret_files_are_kept_as_paths_and_read_anew_on_each_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "key").write_text(KEY + "\n")
    (tmp_path / "password").write_text("pw-from-file\n")
    monkeypatch.setenv("WA_TARGETS", T)
    monkeypatch.setenv("WA_API_KEY_FILE", str(tmp_path / "key"))
    monkeypatch.setenv("WA_USERNAME", "monitor")
    monkeypatch.setenv("WA_PASSWORD_FILE", str(tmp_path / "password"))
    settings = load_settings([])
    creds = settings.credentials()
    assert creds == Credentials(
        api_key_file=tmp_path / "key", username="monitor", password_file=tmp_path / "password"
    )
    assert (creds.read_api_key(), creds.read_password()) == (KEY, "pw-from-file")
    (tmp_path / "key").write_text("rotated-key-0123456789")  # the Secret was rotated
    assert creds.read_api_key() == "rotated-key-0123456789"
    assert KEY not in repr(settings) and "pw-from-file" not in repr(settings)
    assert creds.has_api_key and creds.can_login and creds.configured


def test_a_secret_file_that_became_unusable_says_so_without_the_secret(tmp_path: Path) -> None:
    creds = Credentials(api_key_file=tmp_path / "key", username="u", password_file=tmp_path / "pw")
    with pytest.raises(SecretFileError, match=r"cannot read .*key: file not found"):
        creds.read_api_key()
    (tmp_path / "key").write_text("short\n")
    with pytest.raises(SecretFileError) as caught:
        creds.read_api_key()
    assert "short" not in str(caught.value).replace(str(tmp_path), "")
    (tmp_path / "pw").write_text("\n")
    with pytest.raises(SecretFileError, match="is empty"):
        creds.read_password()


def test_inline_credentials_and_what_they_allow() -> None:
    assert Credentials(api_key=SecretStr(KEY)).read_api_key() == KEY
    assert not Credentials(username="u").can_login
    assert not Credentials().configured
    assert Credentials(api_key=SecretStr(KEY)) == Credentials(api_key=SecretStr(KEY))
    assert len({Target("a", "https://a", Credentials(api_key=SecretStr(KEY)))}) == 1


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"WA_API_KEY": KEY, "WA_API_KEY_FILE": "{tmp}/key"}, "WA_API_KEY_FILE"),
        (
            {"WA_USERNAME": "u", "WA_PASSWORD": "p", "WA_PASSWORD_FILE": "{tmp}/pw"},
            "WA_PASSWORD_FILE",
        ),
        ({"WA_PASSWORD": "p"}, "WA_USERNAME"),
        ({"WA_USERNAME": "u"}, "WA_USERNAME"),
        ({"WA_API_KEY": "first-half-of-key\nsecond-half"}, "WA_API_KEY"),
        ({"WA_API_KEY_FILE": "{tmp}/two-lines"}, "WA_API_KEY_FILE"),
        ({"WA_API_KEY_FILE": "{tmp}/short"}, "WA_API_KEY_FILE"),
        ({"WA_USERNAME": "u", "WA_PASSWORD_FILE": "{tmp}/empty"}, "WA_PASSWORD_FILE"),
    ],
)
def test_contradictory_or_unusable_credentials_are_refused_without_showing_them(
    tmp_path: Path, env: dict[str, str], named: str
) -> None:
    (tmp_path / "key").write_text(KEY)
    (tmp_path / "pw").write_text("p")
    (tmp_path / "two-lines").write_text("first-half-of-key\nsecond-half\n")
    (tmp_path / "short").write_text("shortkey")
    (tmp_path / "empty").write_text("")
    line = refused(WA_TARGETS=T, **{k: v.replace("{tmp}", str(tmp_path)) for k, v in env.items()})
    assert line.startswith(f"invalid setting {named}: "), line
    for secret in (KEY, "first-half-of-key", "second-half", "shortkey"):
        assert secret not in line


# -- warnings ---------------------------------------------------------------------------------


def test_a_misspelt_variable_is_a_warning_naming_the_nearest_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WA_TARGETS", T)
    monkeypatch.setenv("WA_API_KEY", KEY)
    environ = {
        "WA_POLL_INTERVALL": "10",
        "wa_listen_adress": ":1",
        "WA_COMPLETELY_UNRELATED": "1",
        "WA_DB_HOSTNAME": "mysql",  # the Webapp's own, in a shared sidecar environment
        "WA_TARGETS": T,
        "HOME": "/root",
    }
    assert setting_warnings(load_settings([]), environ) == [
        "unknown variable WA_COMPLETELY_UNRELATED is ignored",
        "unknown variable WA_POLL_INTERVALL is ignored; did you mean WA_POLL_INTERVAL?",
        "unknown variable wa_listen_adress is ignored; did you mean WA_LISTEN_ADDRESS?",
    ]


def test_targets_without_credentials_are_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WA_TARGETS", ",".join(f"t{i}=https://t{i}.example" for i in range(7)))
    settings = load_settings([])
    assert setting_warnings(settings, {}) == [
        "7 targets without credentials (no API key, no login): t0, t1, t2, t3, t4 and 2 more"
    ]
    keyed = [Target("k", "https://k", Credentials(api_key=SecretStr(KEY)))]
    assert setting_warnings(settings, {}, keyed) == []


def test_demo_needs_no_targets() -> None:
    settings = load_settings(["--demo"])
    assert settings.demo and setting_warnings(settings, {}) == []


# -- the documentation ------------------------------------------------------------------------


def test_the_configuration_guide_lists_every_setting_with_its_names_and_flag() -> None:
    text = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    section = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    documented = {}
    for row in rows:
        variable, aliases, flags = (re.findall(r"`([^`]+)`", cell) for cell in row.split("|")[1:4])
        documented[variable[0]] = (aliases, flags)
    assert list(documented) == [option.variable for option in OPTIONS.values()]
    for option in OPTIONS.values():
        aliases, flags = documented[option.variable]
        assert aliases == list(option.variables[1:]), option.field
        assert flags[:1] == ([option.flag] if option.flag else []), option.field
