"""Settings from the environment, flags and files, as an operator writes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.settings import Target, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("WA_"):
            monkeypatch.delenv(name)


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


def test_defaults_match_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WA_TARGETS", "https://wa.example")
    settings = load_settings([])
    assert settings.poll_interval == 30
    assert settings.poll_timeout == 10
    assert settings.stale_after_seconds == 90
    assert settings.max_concurrency == 32
    assert settings.max_response_bytes == 4 * 1024 * 1024
    assert settings.listen_address == ":10042"
    assert settings.telemetry_path == "/metrics"
    assert settings.tls_verify is True
    assert (settings.log_level, settings.log_format) == ("info", "logfmt")


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


def test_secrets_are_read_from_files_and_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "key").write_text("k3y-from-a-mounted-secret\n")
    (tmp_path / "password").write_text("pw-from-file\n")
    monkeypatch.setenv("WA_TARGETS", "https://wa.example")
    monkeypatch.setenv("WA_API_KEY_FILE", str(tmp_path / "key"))
    monkeypatch.setenv("WA_USERNAME", "monitor")
    monkeypatch.setenv("WA_PASSWORD_FILE", str(tmp_path / "password"))
    settings = load_settings([])
    assert settings.api_key is not None and settings.password is not None
    assert settings.api_key.get_secret_value() == "k3y-from-a-mounted-secret"
    assert settings.password.get_secret_value() == "pw-from-file"
    assert "k3y-from-a-mounted-secret" not in repr(settings) and "pw-from-file" not in repr(
        settings
    )


def test_demo_needs_no_targets() -> None:
    assert load_settings(["--demo"]).demo
