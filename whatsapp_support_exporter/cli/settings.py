"""Settings: environment variables (prefix ``WA_``), Go-exporter-style flags, secret files.

A flag wins over its variable. Anything invalid stops the program before it polls, with one line
that names the setting (see ``cli.main``), because a monitoring sidecar that starts with
a half-understood configuration is worse than one that refuses to start.

Every flag's variable is ``WA_`` + the flag's name upper-cased with ``.`` and ``-`` as ``_``
(``--web.listen-address`` -> ``WA_WEB_LISTEN_ADDRESS``); the 0.1 names (``WA_LISTEN_ADDRESS``)
stay accepted. Secret files are checked at start and read again on every use (``Credentials``),
so a rotated Kubernetes Secret takes effect without a restart.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import (
    AliasChoices,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from whatsapp_support_exporter.fleet.sharding import parse_shard
from whatsapp_support_exporter.upstream.onprem.target import (
    SUPPORT_PATH,
    Credentials,
    SecretFileError,
    Target,
    TLSOptions,
    check_api_key,
    check_ca_file,
    read_api_key_file,
    read_password_file,
)

# Operators may not poll a shared, rate-limited upstream faster than this. The model itself
# takes shorter intervals (tests drive fast schedules); load_settings() enforces the floor.
MIN_POLL_INTERVAL = 1.0
# Paths the web application serves itself; the metrics path must not shadow them.
RESERVED_PATHS = frozenset({"/", "/-/healthy", "/-/ready", "/-/reload", "/sd"})
_DURATION = re.compile(
    r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?"
)
_DURATION_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


# -- names: field -> flag and variables -------------------------------------------------------

# field -> (flag or None, help). The flag's variable comes first; WA_<FIELD> (the 0.1 name) too.
SETTINGS: dict[str, tuple[str | None, str]] = {
    "targets": ("--target", "a WhatsApp Business API client to poll, [NAME=]URL (repeatable)"),
    "api_key": (None, "API key, sent as 'Authorization: Apikey <key>'"),
    "api_key_file": (None, "file holding the API key"),
    "username": (None, "user for POST /v1/users/login"),
    "password": (None, "password for the login"),
    "password_file": (None, "file holding the password"),
    "config_file": ("--config.file", "YAML file: named credentials, targets, target files"),
    "poll_interval": ("--poll.interval", "time between polls of one target"),
    "poll_timeout": ("--poll.timeout", "time before one poll gives up"),
    "stale_after": (
        "--poll.stale-after",
        "age of the last success when a target's data is withdrawn (default 3 x interval)",
    ),
    "max_concurrency": ("--poll.max-concurrency", "polls in flight at once, all targets"),
    "max_response_bytes": ("--poll.max-response-bytes", "largest upstream body accepted"),
    "max_backoff": ("--poll.max-backoff", "longest wait between polls of a failing target"),
    "max_series": ("--poll.max-series", "most series one target may export"),
    "tls_verify": ("--tls.verify", "verify the upstream's certificate"),
    "tls_ca_file": ("--tls.ca-file", "CA bundle for the upstream's certificate"),
    "collector_health": ("--collector.health", "also poll GET /v1/health"),
    "collector_shards": (
        "--collector.shards",
        "also poll GET /v1/account/shards (multiconnect targets)",
    ),
    "shard": ("--shard", "this replica's shard: a number or a StatefulSet Pod name"),
    "total_shards": ("--total-shards", "number of replicas sharing the targets"),
    "listen_address": ("--web.listen-address", "host:port to serve on"),
    "telemetry_path": ("--web.telemetry-path", "path of the metrics endpoint"),
    "web_config_file": ("--web.config.file", "exporter-toolkit web config (TLS, basic auth)"),
    "web_enable_lifecycle": ("--web.enable-lifecycle", "serve POST /-/reload"),
    "log_level": ("--log.level", "debug, info, warn or error"),
    "log_format": ("--log.format", "logfmt or json"),
    "demo": ("--demo", "poll a built-in simulated WhatsApp Business API (no setup needed)"),
}


def flag_env_name(flag: str) -> str:
    """``--web.listen-address`` -> ``WA_WEB_LISTEN_ADDRESS``."""
    return "WA_" + re.sub(r"[.-]", "_", flag.lstrip("-")).upper()


def env_names(field: str) -> tuple[str, ...]:
    """The variables of a setting, the preferred one first.

    ``--target`` is the exception: it is repeated, WA_TARGETS is a comma-separated list.
    """
    if field == "targets":
        return ("WA_TARGETS",)
    flag = SETTINGS[field][0]
    names = [flag_env_name(flag)] if flag else []
    legacy = f"WA_{field.upper()}"
    if legacy not in names:
        names.append(legacy)
    return tuple(names)


def env_name(field: str) -> str:
    """The preferred variable of a setting."""
    return env_names(field)[0]


def flag_name(field: str) -> str | None:
    return SETTINGS[field][0] if field in SETTINGS else None


def _env(field: str) -> AliasChoices:
    return AliasChoices(*env_names(field))


KNOWN_VARIABLES = frozenset(name for field in SETTINGS for name in env_names(field))
_FIELD_OF = {name: field for field in SETTINGS for name in (*env_names(field), field.upper())}


# -- value parsers ----------------------------------------------------------------------------


def parse_duration(value: Any) -> Any:
    """Seconds (``30``, ``0.5``) or Prometheus' form (``1m30s``, ``500ms``) into seconds."""
    if isinstance(value, bool) or not isinstance(value, str):
        return value
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ValueError("is not a duration: use seconds (30, 0.5) or 30s, 1m30s, 500ms")
    return float(
        sum(int(n) * unit for n, unit in zip(match.groups(), _DURATION_UNITS, strict=True) if n)
    )


def format_duration(seconds: float) -> str:
    """30.0 -> ``30s``, 90 -> ``1m30s``, 0.5 -> ``500ms`` (for --help)."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{int(minutes)}m" if minutes else ""
    if rest:
        text += f"{rest:g}s"
    return text


def _log_level(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip().lower()
        return "warn" if value == "warning" else value
    return value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _shard(value: Any) -> Any:
    if isinstance(value, str | int) and not isinstance(value, bool):
        return parse_shard(value)
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]


# -- the model --------------------------------------------------------------------------------


class Settings(BaseSettings):
    """Everything the exporter can be told; names mirror the contract."""

    model_config = SettingsConfigDict(
        env_prefix="WA_",
        extra="ignore",
        validate_default=True,
        case_sensitive=False,
        populate_by_name=True,
    )

    targets: Annotated[list[Target], NoDecode] = Field(
        default_factory=list, validation_alias=_env("targets")
    )
    api_key: SecretStr | None = Field(None, validation_alias=_env("api_key"))
    api_key_file: Path | None = Field(None, validation_alias=_env("api_key_file"))
    username: str | None = Field(None, validation_alias=_env("username"))
    password: SecretStr | None = Field(None, validation_alias=_env("password"))
    password_file: Path | None = Field(None, validation_alias=_env("password_file"))
    config_file: Path | None = Field(None, validation_alias=_env("config_file"))

    poll_interval: Duration = Field(
        30.0, gt=0, allow_inf_nan=False, validation_alias=_env("poll_interval")
    )
    poll_timeout: Duration = Field(
        10.0, gt=0, allow_inf_nan=False, validation_alias=_env("poll_timeout")
    )
    stale_after: Duration | None = Field(
        None, gt=0, allow_inf_nan=False, validation_alias=_env("stale_after")
    )
    max_concurrency: int = Field(32, ge=1, validation_alias=_env("max_concurrency"))
    max_response_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, validation_alias=_env("max_response_bytes")
    )
    max_backoff: Duration = Field(
        300.0, gt=0, allow_inf_nan=False, validation_alias=_env("max_backoff")
    )
    max_series: int = Field(10000, ge=1, validation_alias=_env("max_series"))

    tls_verify: bool = Field(True, validation_alias=_env("tls_verify"))
    tls_ca_file: Path | None = Field(None, validation_alias=_env("tls_ca_file"))

    collector_health: bool = Field(True, validation_alias=_env("collector_health"))
    collector_shards: bool = Field(True, validation_alias=_env("collector_shards"))

    shard: Annotated[int, BeforeValidator(_shard)] = Field(0, ge=0, validation_alias=_env("shard"))
    total_shards: int = Field(1, ge=1, validation_alias=_env("total_shards"))

    listen_address: str = Field(":10042", validation_alias=_env("listen_address"))
    telemetry_path: str = Field("/metrics", validation_alias=_env("telemetry_path"))
    web_config_file: Path | None = Field(None, validation_alias=_env("web_config_file"))
    web_enable_lifecycle: bool = Field(False, validation_alias=_env("web_enable_lifecycle"))
    log_level: Annotated[Literal["debug", "info", "warn", "error"], BeforeValidator(_log_level)] = (
        Field("info", validation_alias=_env("log_level"))
    )
    log_format: Annotated[Literal["logfmt", "json"], BeforeValidator(_lower)] = Field(
        "logfmt", validation_alias=_env("log_format")
    )

    demo: bool = Field(False, validation_alias=_env("demo"))

    @field_validator("targets", mode="before")
    @classmethod
    def _split_targets(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            return [Target.parse(v) if isinstance(v, str) else v for v in value]
        return value

    @field_validator("targets")
    @classmethod
    def _unique_names(cls, targets: list[Target]) -> list[Target]:
        seen: set[str] = set()
        for target in targets:
            if target.name in seen:
                raise ValueError(f"target name {target.name!r} is used twice")
            seen.add(target.name)
        return targets

    @field_validator("password_file", "web_config_file", "config_file")
    @classmethod
    def _readable_file(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError(f"{path} is not a readable file")
        return path

    @field_validator("api_key_file")
    @classmethod
    def _usable_key_file(cls, path: Path | None) -> Path | None:
        if path is not None:
            try:
                read_api_key_file(path)
            except SecretFileError as err:
                raise ValueError(str(err)) from None
        return path

    @field_validator("password_file")
    @classmethod
    def _usable_password_file(cls, path: Path | None) -> Path | None:
        if path is not None:
            try:
                read_password_file(path)
            except SecretFileError as err:
                raise ValueError(str(err)) from None
        return path

    @field_validator("tls_ca_file")
    @classmethod
    def _ca_bundle(cls, path: Path | None) -> Path | None:
        if path is not None:
            check_ca_file(path)
        return path

    @field_validator("api_key")
    @classmethod
    def _key_length(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None:
            check_api_key(key.get_secret_value())
        return key

    @field_validator("listen_address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        split_listen_address(value)
        return value

    @field_validator("telemetry_path")
    @classmethod
    def _routable_path(cls, value: str) -> str:
        if not value.startswith("/") or value in RESERVED_PATHS:
            raise ValueError(
                "must be an absolute path other than " + ", ".join(sorted(RESERVED_PATHS))
            )
        if re.search(r"[{}?#\s]", value):
            raise ValueError("must be a plain path (no {, }, ?, # or spaces)")
        try:
            web.UrlDispatcher().add_get(value, _never_called)
        except ValueError as err:
            raise ValueError(f"is not a path the web server can route ({err})") from None
        return value

    @model_validator(mode="after")
    def _derived(self) -> Settings:
        if self.api_key is not None and self.api_key_file is not None:
            raise _SettingError("api_key_file", "WA_API_KEY and WA_API_KEY_FILE are both set")
        if self.password is not None and self.password_file is not None:
            raise _SettingError("password_file", "WA_PASSWORD and WA_PASSWORD_FILE are both set")
        has_password = self.password is not None or self.password_file is not None
        if self.username is not None and not has_password:
            raise _SettingError("username", "WA_USERNAME needs WA_PASSWORD or WA_PASSWORD_FILE")
        if self.username is None and has_password:
            raise _SettingError("username", "a password is set but WA_USERNAME is not")
        if not self.targets and not self.demo and self.config_file is None:
            raise _SettingError(
                "targets", "at least one target is required (or --config.file, or --demo)"
            )
        if self.shard >= self.total_shards:
            raise _SettingError(
                "shard", f"must be below the number of shards ({self.total_shards})"
            )
        if self.stale_after is None:
            self.stale_after = 3 * self.poll_interval
        elif self.stale_after < self.poll_interval:
            raise _SettingError(
                "stale_after",
                "is shorter than the poll interval: every target's data would blink out"
                " between polls",
            )
        return self

    @property
    def stale_after_seconds(self) -> float:
        """The stale-after age, always resolved after validation."""
        assert self.stale_after is not None
        return self.stale_after

    def credentials(self) -> Credentials:
        """The environment's credentials: those of WA_TARGETS and of targets without ``auth``."""
        return Credentials(
            api_key=self.api_key,
            api_key_file=self.api_key_file,
            username=self.username,
            password=self.password,
            password_file=self.password_file,
        )

    def tls(self) -> TLSOptions:
        """The environment's TLS options (the defaults of every target)."""
        return TLSOptions(verify=self.tls_verify, ca_file=self.tls_ca_file)


async def _never_called(request: web.Request) -> web.StreamResponse:  # pragma: no cover
    raise web.HTTPNotFound()


class _SettingError(ValueError):
    """A cross-field error that still names its setting."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


def split_listen_address(value: str) -> tuple[str, int]:
    """``host:port`` or ``:port`` (all interfaces) into its parts."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not host:port")
    return host.strip("[]"), int(port)


# -- command line -----------------------------------------------------------------------------

# flag -> (field, help), every flag but --target (all flags take a value but the switches).
FLAGS: dict[str, tuple[str, str]] = {
    flag: (name, text)
    for name, (flag, text) in SETTINGS.items()
    if flag is not None and name != "targets"
}
_DURATIONS = frozenset({"poll_interval", "poll_timeout", "stale_after", "max_backoff"})


def _metavar(field: str) -> str:
    annotation = str(Settings.model_fields[field].annotation)
    if field in _DURATIONS:
        return "DURATION"
    if "Path" in annotation:
        return "FILE"
    if field == "shard":
        return "SHARD"
    if annotation == "<class 'int'>":
        return "N"
    return field.split("_")[-1].upper()


def _default_text(field: str) -> str:
    default = Settings.model_fields[field].default
    if field in _DURATIONS and isinstance(default, float):
        return format_duration(default)
    if isinstance(default, bool):
        return str(default).lower()
    return str(default)


def build_parser() -> argparse.ArgumentParser:
    """Flags in the style of the Go exporters; defaults stay None so variables apply."""
    parser = argparse.ArgumentParser(
        prog="whatsapp-support-exporter",
        description="Export the WhatsApp Business API On-Premises /v1/support data to Prometheus."
        " Every flag also has a WA_* environment variable (shown in brackets); the flag wins."
        " Durations: 30s, 1m30s, 500ms or plain seconds.",
    )
    parser.add_argument(
        "--target",
        action="append",
        dest="targets",
        metavar="[NAME=]URL",
        help=f"{SETTINGS['targets'][1]} [WA_TARGETS, comma-separated]",
    )
    for flag, (name, text) in FLAGS.items():
        default = Settings.model_fields[name].default
        shown = "" if default is None else f", default {_default_text(name)}"
        text = f"{text} [{env_name(name)}{shown}]".replace("%", "%%")
        if isinstance(default, bool) and default:
            parser.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=text
            )
        elif isinstance(default, bool):
            parser.add_argument(flag, dest=name, action="store_true", default=None, help=text)
        else:
            parser.add_argument(flag, dest=name, metavar=_metavar(name), help=text)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    return parser


class SettingsError(Exception):
    """Raised with a single line naming the setting at fault."""


def load_settings(argv: list[str] | None = None, **overrides: Any) -> Settings:
    """Build Settings from flags (winning) and the environment; raise SettingsError on bad input."""
    args = build_parser().parse_args(argv)
    values = {k: v for k, v in vars(args).items() if v is not None and k != "version"}
    values.update(overrides)
    environ = os.environ
    _refuse_conflicting_names(environ, set(values))
    try:
        settings = Settings(**values)
    except ValidationError as err:
        raise SettingsError(describe(err, environ, set(values))) from None
    if settings.poll_interval < MIN_POLL_INTERVAL:
        names = _names("poll_interval", environ, set(values))
        raise SettingsError(
            f"invalid setting {names}: must be at least {MIN_POLL_INTERVAL:g}s (the upstream"
            " is rate-limited and shared)"
        )
    return settings


def _set_variables(field: str, environ: Mapping[str, str]) -> list[str]:
    """The variables of ``field`` that are set, as the environment spells them."""
    wanted = set(env_names(field))
    return [name for name in environ if name.upper() in wanted]


def _refuse_conflicting_names(environ: Mapping[str, str], from_flags: set[str]) -> None:
    """The new and the 0.1 name of one setting both set, to different values: which one is meant?"""
    for field in SETTINGS:
        if field in from_flags:
            continue
        names = _set_variables(field, environ)
        if len({environ[name] for name in names}) > 1:
            raise SettingsError(
                f"invalid setting {' and '.join(sorted(names))}: both are set, to different"
                " values; keep one"
            )


def _names(field: str, environ: Mapping[str, str], from_flags: set[str]) -> str:
    """How to name a setting to the operator: the variable they set (or the preferred one) and
    the flag."""
    set_names = [] if field in from_flags else _set_variables(field, environ)
    names = set_names[0].upper() if set_names else env_name(field)
    flag = flag_name(field)
    return f"{names} ({flag})" if flag else names


def describe(
    err: ValidationError,
    environ: Mapping[str, str] | None = None,
    from_flags: Iterable[str] = (),
) -> str:
    """The first problem as one line: which setting, what is wrong. Never echoes a value."""
    errors = err.errors(include_input=False, include_url=False)
    first = errors[0]
    loc = [str(part) for part in first["loc"]]
    field = _FIELD_OF.get(loc[0].upper(), loc[0]) if loc else ""
    message = first["msg"].removeprefix("Value error, ")
    ctx_err = (first.get("ctx") or {}).get("error")
    if isinstance(ctx_err, _SettingError):
        field = ctx_err.setting
    if field in SETTINGS:
        names = _names(field, os.environ if environ is None else environ, set(from_flags))
    else:
        names = "settings"
    more = len(errors) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else ""
    return f"invalid setting {names}: {message}{suffix}".replace("\n", " ")


# -- warnings ---------------------------------------------------------------------------------

# The Webapp's own database variables, seen by a sidecar that shares the Webapp's environment.
_FOREIGN_PREFIXES = ("WA_DB_",)
_NAMES_SHOWN = 5


def setting_warnings(
    settings: Settings, environ: Mapping[str, str], targets: Iterable[Target] | None = None
) -> list[str]:
    """One line per thing an operator probably did not mean; nothing here stops the start.

    ``targets`` is the whole fleet (``config.load_targets``); without it, ``settings.targets``.
    """
    warnings = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith("WA_") or upper in KNOWN_VARIABLES:
            continue
        if upper.startswith(_FOREIGN_PREFIXES):
            continue
        nearest = difflib.get_close_matches(upper, sorted(KNOWN_VARIABLES), n=1, cutoff=0.6)
        hint = f"; did you mean {nearest[0]}?" if nearest else ""
        warnings.append(f"unknown variable {name} is ignored{hint}")
    if targets is None:  # as load_targets gives them: with the environment's credentials
        env_creds = settings.credentials()
        targets = (dataclasses.replace(t, credentials=env_creds) for t in settings.targets)
    fleet = list(targets)
    if not settings.demo:
        bare = [t.name for t in fleet if not t.credentials.configured]
        if bare:
            warnings.append(
                f"{_count(bare, 'target')} without credentials (no API key, no login): "
                f"{_some(bare)}"
            )
    stripped = [t.name for t in fleet if t.support_path_stripped]
    if stripped:
        warnings.append(
            f"{_count(stripped, 'target URL')} ended in {SUPPORT_PATH}, which was stripped (give"
            f" the base URL): {_some(stripped)}"
        )
    return warnings


def _count(names: list[str], noun: str) -> str:
    return f"{len(names)} {noun}{'s' if len(names) != 1 else ''}"


def _some(names: list[str]) -> str:
    shown = ", ".join(names[:_NAMES_SHOWN])
    more = len(names) - _NAMES_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")
