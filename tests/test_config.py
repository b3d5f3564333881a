"""The configuration file as an operator writes it: a fleet with its credentials, and one line
naming the file and the place for every mistake."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import trustme
from pydantic import SecretStr

from whatsapp_support_exporter.fleet.config import (
    ConfigError,
    config_fingerprint,
    load_fleet,
    load_targets,
)
from whatsapp_support_exporter.fleet.settings import Settings
from whatsapp_support_exporter.upstream.onprem.target import Credentials, Target, TLSOptions

ROOT = Path(__file__).parent.parent
KEY = "prod-api-key-0123456789"
ENV_KEY = "environment-api-key-42"
PASSWORD = "pr0d-pa55word"
INLINE_KEY = "inline-api-key-ABCDEFG"
SECRETS = (KEY, ENV_KEY, PASSWORD, INLINE_KEY, "shortkey", "hunter2")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("WA_"):
            monkeypatch.delenv(name)


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    """A directory with secret files, a CA bundle and a target file directory."""
    (tmp_path / "key").write_text(KEY + "\n")
    (tmp_path / "short").write_text("shortkey\n")
    (tmp_path / "password").write_text(PASSWORD + "\n")
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    (tmp_path / "t").mkdir()
    return tmp_path


def settings_for(tmp: Path, config: str, **values: object) -> Settings:
    path = tmp / "config.yml"
    path.write_text(config.replace("{tmp}", str(tmp)))
    return Settings(config_file=path, **values)  # type: ignore[arg-type]


GOOD = """
auths:
  prod: {api_key_file: key, username: monitoring, password_file: "{tmp}/password"}
  inline: {api_key: INLINE_KEY}
targets:
  - name: eu-prod
    url: https://wa-eu.example:9090/
    auth: prod
    tls_config: {ca_file: ca.pem}
    labels: {region: eu, env: prod}
  - url: https://wa-us.example:9090/v1/support
    tls_config: {insecure_skip_verify: true}
target_files: [t/*.yml, "{tmp}/t/*.json"]
""".replace("INLINE_KEY", INLINE_KEY)


def test_a_fleet_from_the_environment_the_file_and_its_target_files(tmp: Path) -> None:
    (tmp / "t" / "a.yml").write_text(
        "- targets: [a1=https://a1.example, https://a2.example:8443]\n"
        "  labels: {auth: prod, team: payments}\n"
        "- targets: [a3=http://a3.example]\n"
    )
    (tmp / "t" / "b.json").write_text(
        json.dumps([{"targets": ["b1=https://b1.example"], "labels": {"auth": "inline"}}])
    )
    settings = settings_for(
        tmp, GOOD, targets="env=https://env.example", api_key=ENV_KEY, tls_verify=False
    )
    env_creds = Credentials(api_key=SecretStr(ENV_KEY))
    prod = Credentials(
        api_key_file=tmp / "key", username="monitoring", password_file=tmp / "password"
    )
    env_tls = TLSOptions(verify=False)
    assert load_targets(settings) == [
        Target("env", "https://env.example", env_creds, env_tls),
        Target(
            "eu-prod",
            "https://wa-eu.example:9090",
            prod,
            TLSOptions(verify=False, ca_file=tmp / "ca.pem"),  # verify kept from the environment
            (("env", "prod"), ("region", "eu")),
        ),
        Target("wa-us.example:9090", "https://wa-us.example:9090", env_creds, env_tls),
        Target("a1", "https://a1.example", prod, env_tls, (("team", "payments"),)),
        Target(
            "a2.example:8443", "https://a2.example:8443", prod, env_tls, (("team", "payments"),)
        ),
        Target("a3", "http://a3.example", env_creds, env_tls),
        Target("b1", "https://b1.example", Credentials(api_key=SecretStr(INLINE_KEY)), env_tls),
    ]


def test_secret_files_named_by_an_auth_are_read_again_on_use(tmp: Path) -> None:
    [target, *_] = load_targets(settings_for(tmp, GOOD))
    assert target.credentials.read_api_key() == KEY
    (tmp / "key").write_text("rotated-prod-key-9876543210")
    assert target.credentials.read_api_key() == "rotated-prod-key-9876543210"


def test_the_annotated_example_in_the_docs_loads(tmp_path: Path) -> None:
    base = tmp_path / "etc"
    text = (ROOT / "docs" / "example-config.yml").read_text()
    config = tmp_path / "config.yml"
    config.write_text(text.replace("/etc/whatsapp-exporter", str(base)))
    for env in ("prod", "staging"):
        (base / "secrets" / env).mkdir(parents=True)
        (base / "secrets" / env / "password").write_text(PASSWORD)
    (base / "secrets" / "prod" / "api-key").write_text(KEY)
    trustme.CA().cert_pem.write_to_path(str(base / "secrets" / "prod" / "ca.pem"))
    (base / "targets").mkdir()
    (base / "targets" / "payments.yml").write_text(
        "- targets: [pay-1=https://pay-1.example:9090]\n  labels: {auth: prod, team: pay}\n"
    )
    (base / "secrets" / "meta").mkdir()
    (base / "secrets" / "meta" / "token").write_text("EAAG-example-token")
    (base / "secrets" / "meta" / "token-eu").write_text("EAAG-example-token-eu")
    fleet = load_fleet(Settings(config_file=config))
    targets = fleet.targets
    assert [(a.name, a.read_token()) for a in fleet.accounts] == [
        ("acme", "EAAG-example-token"),
        ("acme-eu", "EAAG-example-token-eu"),
    ]
    assert [t.name for t in targets] == ["eu-prod", "us-prod", "staging", "pay-1"]
    assert targets[2].tls == TLSOptions(verify=False)
    assert targets[0].labels == (("env", "prod"), ("region", "eu"))


# -- every mistake: one line, the file, the place ---------------------------------------------

T = "https://wa.example"
# id -> (configuration file, target file t/a.yml or None, the line, {cfg} and {tmp} filled in)
BAD: dict[str, tuple[str, str | None, str]] = {
    "unknown-top-level-key": (
        "scrape_interval: 30s\n",
        None,
        "{cfg}: scrape_interval: unknown key",
    ),
    "unknown-target-key": (
        f"targets: [{{name: a, url: '{T}', urll: x}}]",
        None,
        "{cfg}: targets[0].urll: unknown key; did you mean url?",
    ),
    "misspelt-waba-id": (
        "cloud: {token: t, accounts: [{name: a, wabaid: '1'}]}",
        None,
        "{cfg}: cloud.accounts[0].wabaid: unknown key; did you mean waba_id? (and 1 more problem)",
    ),
    "target-instead-of-targets": (
        f"target: [{{url: '{T}'}}]",
        None,
        "{cfg}: target: unknown key; did you mean targets?",
    ),
    "misspelt-auth-key": (
        f"auths: {{prod: {{apikey_file: key}}}}\ntargets: [{{url: '{T}', auth: prod}}]",
        None,
        "{cfg}: auths.prod.apikey_file: unknown key; did you mean api_key_file?",
    ),
    "misspelt-tls-key": (
        f"targets: [{{url: '{T}', tls_config: {{cafile: ca.pem}}}}]",
        None,
        "{cfg}: targets[0].tls_config.cafile: unknown key; did you mean ca_file?",
    ),
    "missing-url": ("targets: [{name: a}]", None, "{cfg}: targets[0].url: is required"),
    "empty-name": (
        f"targets: [{{name: '', url: '{T}'}}]",
        None,
        "{cfg}: targets[0].name: String should have at least 1 character",
    ),
    "ftp-url": (
        "targets: [{url: 'ftp://wa.example'}]",
        None,
        "{cfg}: targets[0].url: 'ftp://wa.example' is not an http:// or https:// URL with a host",
    ),
    "credentials-in-url": (
        "targets: [{url: 'https://admin:hunter2@wa.example'}]",
        None,
        "{cfg}: targets[0].url: credentials in a target URL are not allowed; use"
        " WA_USERNAME/WA_PASSWORD or an auth of the configuration file",
    ),
    "unknown-auth": (
        f"auths: {{prod: {{api_key_file: key}}}}\ntargets: [{{url: '{T}', auth: prod}}, {{name: b, url: '{T}', auth: prdo}}]",
        None,
        '{cfg}: targets[1].auth: no auth named "prdo" (did you mean prod? known: prod)',
    ),
    "auth-but-none-defined": (
        f"targets: [{{url: '{T}', auth: prod}}]",
        None,
        '{cfg}: targets[0].auth: no auth named "prod" (known: none are defined)',
    ),
    "duplicate-name": (
        f"targets: [{{name: a, url: '{T}'}}, {{name: a, url: 'https://other.example'}}]",
        None,
        '{cfg}: targets[1]: target name "a" is also defined at {cfg}: targets[0]',
    ),
    "duplicate-default-name": (
        f"targets: [{{url: '{T}/a'}}, {{url: '{T}/b'}}]",
        None,
        '{cfg}: targets[1]: target name "wa.example:443" is also defined at {cfg}: targets[0]'
        " (a name defaults to host:port: name each target, name=url or name:)",
    ),
    "duplicate-of-wa-targets": (
        "targets: [{name: env, url: 'https://other.example'}]",
        None,
        '{cfg}: targets[0]: target name "env" is also defined at WA_TARGETS',
    ),
    "duplicate-in-a-target-file": (
        f"targets: [{{name: a, url: '{T}'}}]\ntarget_files: [t/*.yml]",
        "- targets: [b=https://b.example, a=https://a.example]",
        '{tmp}/t/a.yml: [0].targets[1]: target name "a" is also defined at {cfg}: targets[0]',
    ),
    "missing-secret-file": (
        f"auths: {{prod: {{api_key_file: nope}}}}\ntargets: [{{url: '{T}'}}]",
        None,
        "{cfg}: auths.prod.api_key_file: cannot read {tmp}/nope: file not found",
    ),
    "short-key-in-file": (
        f"auths: {{prod: {{api_key_file: short}}}}\ntargets: [{{url: '{T}'}}]",
        None,
        "{cfg}: auths.prod.api_key_file: {tmp}/short holds no usable API key: must be 12 to"
        " 128 characters long (got 8)",
    ),
    "missing-password-file": (
        f"auths: {{prod: {{username: u, password_file: /nonexistent/pw}}}}\ntargets: [{{url: '{T}'}}]",
        None,
        "{cfg}: auths.prod.password_file: cannot read /nonexistent/pw: file not found",
    ),
    "short-inline-key": (
        f"auths: {{prod: {{api_key: shortkey}}}}\ntargets: [{{url: '{T}'}}]",
        None,
        "{cfg}: auths.prod.api_key: must be 12 to 128 characters long (got 8)",
    ),
    "key-and-key-file": (
        f"auths: {{prod: {{api_key: {INLINE_KEY}, api_key_file: key}}}}\ntargets: [{{url: '{T}'}}]",
        None,
        "{cfg}: auths.prod: api_key and api_key_file are both set; keep one",
    ),
    "username-without-password": (
        f"auths: {{prod: {{username: monitoring}}}}\ntargets: [{{url: '{T}'}}]",
        None,
        "{cfg}: auths.prod: username needs password or password_file",
    ),
    "password-without-username": (
        f"auths: {{prod: {{password: hunter2}}}}\ntargets: [{{url: '{T}'}}]",
        None,
        "{cfg}: auths.prod: a password is set but username is not",
    ),
    "empty-auth": (
        f"auths: {{prod: {{}}}}\ntargets: [{{url: '{T}'}}]",
        None,
        "{cfg}: auths.prod: names no credential (api_key, api_key_file or username)",
    ),
    "auth-not-a-mapping": (
        f"auths: {{prod: {KEY}}}\ntargets: [{{url: '{T}'}}]",
        None,
        "{cfg}: auths.prod: must be a mapping",
    ),
    "ca-file-not-a-certificate": (
        f"targets: [{{url: '{T}', tls_config: {{ca_file: garbage.pem}}}}]",
        None,
        "{cfg}: targets[0].tls_config.ca_file: {tmp}/garbage.pem holds no usable CA"
        " certificate (PEM)",
    ),
    "missing-ca-file": (
        f"targets: [{{url: '{T}', tls_config: {{ca_file: nope.pem}}}}]",
        None,
        "{cfg}: targets[0].tls_config.ca_file: {tmp}/nope.pem: file not found",
    ),
    "skip-verify-not-a-boolean": (
        f"targets: [{{url: '{T}', tls_config: {{insecure_skip_verify: maybe}}}}]",
        None,
        "{cfg}: targets[0].tls_config.insecure_skip_verify: must be true or false",
    ),
    "bad-label-name": (
        f"targets: [{{url: '{T}', labels: {{team-name: x}}}}]",
        None,
        '{cfg}: targets[0].labels: "team-name" is not a label name ([a-zA-Z_][a-zA-Z0-9_]*,'
        " no leading __)",
    ),
    "target-label": (
        f"targets: [{{url: '{T}', labels: {{target: x}}}}]",
        None,
        '{cfg}: targets[0].labels: "target" cannot be a label here',
    ),
    "job-label": (
        f"targets: [{{url: '{T}', labels: {{job: payments}}}}]",
        None,
        '{cfg}: targets[0].labels: "job" is set by Prometheus on every scrape (yours would'
        " become exported_job); choose another name",
    ),
    "instance-label-in-a-target-file": (
        "target_files: [t/*.yml]",
        "- targets: [https://a.example]\n  labels: {instance: a}",
        '{tmp}/t/a.yml: [0].labels: "instance" is set by Prometheus on every scrape (yours'
        " would become exported_instance); choose another name",
    ),
    "auth-label-on-a-listed-target": (
        f"targets: [{{url: '{T}', labels: {{auth: prod}}}}]",
        None,
        '{cfg}: targets[0].labels: "auth" cannot be a label here',
    ),
    "label-value-not-a-string": (
        f"targets: [{{url: '{T}', labels: {{port: 9090}}}}]",
        None,
        "{cfg}: targets[0].labels.port: must be a string",
    ),
    "two-problems": (
        "targets: [{urll: x}]",
        None,
        # the misspelling is named, not the key it left missing
        "{cfg}: targets[0].urll: unknown key; did you mean url? (and 1 more problem)",
    ),
    "yaml-syntax": (
        "targets: [\n",
        None,
        "{cfg}: line 2, column 1: did not find expected node content",
    ),
    "duplicate-yaml-key": (
        f"targets: []\ntargets: [{{url: '{T}'}}]\n",
        None,
        '{cfg}: line 2, column 1: duplicate key "targets"',
    ),
    "not-a-mapping": ("- a\n- b\n", None, "{cfg}: must be a mapping"),
    "target-files-not-a-list": (
        "target_files: t/*.yml\n",
        None,
        "{cfg}: target_files: must be a list",
    ),
    "no-targets": (
        "target_files: [t/*.yml]\n",
        None,
        "{cfg}: no targets (targets and target_files give none)",
    ),
    "target-file-not-a-list": (
        "target_files: [t/*.yml]",
        "targets: [https://a.example]",
        "{tmp}/t/a.yml: must be a list",
    ),
    "target-file-unknown-key": (
        "target_files: [t/*.yml]",
        "- targets: [https://a.example]\n  label: {env: prod}",
        "{tmp}/t/a.yml: [0].label: unknown key; did you mean labels?",
    ),
    "target-file-bad-url": (
        "target_files: [t/*.yml]",
        "- targets: [https://a.example, a.example:9090]",
        "{tmp}/t/a.yml: [0].targets[1]: 'a.example:9090' is not an http:// or https:// URL"
        " with a host",
    ),
    "target-file-unknown-auth": (
        "auths: {prod: {api_key_file: key}}\ntarget_files: [t/*.yml]",
        "- targets: [https://a.example]\n  labels: {auth: staging}",
        '{tmp}/t/a.yml: [0].labels.auth: no auth named "staging" (known: prod)',
    ),
    "target-file-bad-label": (
        "target_files: [t/*.yml]",
        "- targets: [https://a.example]\n  labels: {__address__: x}",
        '{tmp}/t/a.yml: [0].labels: "__address__" is not a label name ([a-zA-Z_][a-zA-Z0-9_]*,'
        " no leading __)",
    ),
    "target-file-yaml-syntax": (
        "target_files: [t/*.yml]",
        "- targets: [https://a.example\n",
        "{tmp}/t/a.yml: line 2, column 1: did not find expected ',' or ']'",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_mistake_is_one_line_naming_the_file_and_the_place(tmp: Path, case: str) -> None:
    config, target_file, expected = BAD[case]
    if target_file is not None:
        (tmp / "t" / "a.yml").write_text(target_file)
    settings = settings_for(
        tmp, config, targets="env=https://env.example" if "wa-targets" in case else []
    )
    with pytest.raises(ConfigError) as caught:
        load_targets(settings)
    line = str(caught.value)
    assert line == expected.replace("{cfg}", str(tmp / "config.yml")).replace("{tmp}", str(tmp))
    for secret in SECRETS:
        assert secret not in line


def test_a_target_file_in_json_that_is_not_json(tmp: Path) -> None:
    (tmp / "t" / "a.json").write_text('[{"targets": ["https://a.example",]}]')
    with pytest.raises(ConfigError, match=r"^.*/t/a\.json: not valid JSON \(.*line 1.*\)$"):
        load_targets(settings_for(tmp, "target_files: [t/*.json]"))


def test_a_configuration_file_removed_after_start_is_a_refused_reload(tmp: Path) -> None:
    settings = settings_for(tmp, f"targets: [{{url: '{T}'}}]")
    (tmp / "config.yml").unlink()
    with pytest.raises(ConfigError) as caught:
        load_targets(settings)
    assert str(caught.value) == f"{tmp}/config.yml: file not found"


def test_without_a_configuration_file_the_environment_is_the_fleet() -> None:
    settings = Settings(targets="a=https://a.example", username="u", password="p")
    [target] = load_targets(settings)
    assert target.credentials == Credentials(username="u", password=SecretStr("p"))
    assert load_targets(Settings(demo=True)) == []


# -- change detection -------------------------------------------------------------------------


def test_the_fingerprint_changes_with_every_file_the_fleet_comes_from(tmp: Path) -> None:
    (tmp / "t" / "a.yml").write_text("- targets: [https://a.example]\n")
    settings = settings_for(tmp, GOOD)
    first = config_fingerprint(settings)
    assert config_fingerprint(settings) == first  # nothing changed, nothing to reload
    assert {entry[0] for entry in first} == {
        str(tmp / name) for name in ("config.yml", "t/a.yml", "key", "password", "ca.pem")
    }

    def touched(path: Path, text: str) -> tuple[tuple[str, int, int], ...]:
        before = config_fingerprint(settings)
        path.write_text(text)
        stamp = time.time_ns() + 10**9  # a distinct mtime even on a coarse clock
        os.utime(path, ns=(stamp, stamp))
        after = config_fingerprint(settings)
        assert after != before, path
        return after

    touched(tmp / "t" / "a.yml", "- targets: [https://a.example, https://b.example]\n")
    after = touched(tmp / "t" / "b.yml", "- targets: [https://c.example]\n")  # a new file
    assert str(tmp / "t" / "b.yml") in {entry[0] for entry in after}
    touched(tmp / "key", "rotated-prod-key-9876543210")
    touched(tmp / "config.yml", GOOD.replace("{tmp}", str(tmp)) + "\n# edited\n")


def test_the_fingerprint_of_a_missing_or_broken_file_does_not_raise(tmp: Path) -> None:
    settings = settings_for(tmp, "targets: [\n")
    assert config_fingerprint(settings) == ((str(tmp / "config.yml"), *_stat(tmp / "config.yml")),)
    (tmp / "config.yml").unlink()
    assert config_fingerprint(settings) == ((str(tmp / "config.yml"), -1, -1),)


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


# -- scale ------------------------------------------------------------------------------------


def test_twenty_thousand_targets_from_target_files_load_in_well_under_two_seconds(
    tmp: Path,
) -> None:
    for f in range(20):
        groups = [
            {
                "targets": [
                    f"t{f}-{g}-{i}=https://wa-{f}-{g}-{i}.example:9090" for i in range(100)
                ],
                "labels": {"auth": "prod", "env": "prod", "region": f"r{g}"},
            }
            for g in range(10)
        ]
        (tmp / "t" / f"f{f}.yml").write_text(json.dumps(groups))  # JSON is YAML too
    settings = settings_for(tmp, "auths: {prod: {api_key_file: key}}\ntarget_files: [t/*.yml]")
    # CPU time: the wall time of a shared CI machine says more about its neighbours
    started, started_cpu = time.perf_counter(), time.process_time()
    targets = load_targets(settings)
    took, took_cpu = time.perf_counter() - started, time.process_time() - started_cpu
    print(f"20000 targets from 20 YAML target files: {took_cpu:.2f} s CPU, {took:.2f} s wall")
    assert len(targets) == 20000
    assert took_cpu < 2.0
    started = time.perf_counter()
    config_fingerprint(settings)
    assert time.perf_counter() - started < 0.1
