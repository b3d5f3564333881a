"""The settings model: everything the exporter can be told, validated whole.

Names, defaults and help come from the table (``fleet.options``); this module adds the types,
the limits and the checks across fields. It lives with the fleet, which is built from it, so
that nothing below the command line imports the command line. Environment variables are read
here (prefix ``WA_``); the command line (``cli.settings``) passes its flags as field values.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BeforeValidator, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from whatsapp_support_exporter.fleet.options import OPTIONS, parse_duration, setting
from whatsapp_support_exporter.fleet.sharding import parse_shard
from whatsapp_support_exporter.upstream.cloud.account import (
    CloudAccount,
    check_api_version,
    check_graph_url,
    check_token,
    parse_waba_id,
    read_token_file,
)
from whatsapp_support_exporter.upstream.onprem.target import (
    ApiKey,
    ApiKeyFile,
    Credentials,
    PasswordFile,
    SecretFileError,
    Target,
    TLSOptions,
    check_ca_file,
    duplicate_hint,
    file_problem,
)

# Operators may not poll a shared, rate-limited upstream faster than this. The model itself
# takes shorter intervals (tests drive fast schedules); the command line enforces the floor.
MIN_POLL_INTERVAL = 1.0
# Paths the web application serves itself; the metrics path must not shadow them.
RESERVED_PATHS = frozenset({"/", "/-/healthy", "/-/ready", "/-/reload", "/sd"})


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


class SettingError(ValueError):
    """A cross-field error that still names its setting."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


def _variable(field: str) -> str:
    return OPTIONS[field].variable


class Settings(BaseSettings):
    """Everything the exporter can be told; names mirror the contract."""

    model_config = SettingsConfigDict(
        env_prefix="WA_",
        extra="ignore",
        validate_default=True,
        case_sensitive=False,
        populate_by_name=True,
    )

    targets: Annotated[list[Target], NoDecode] = setting("targets")
    api_key: ApiKey | None = setting("api_key")
    api_key_file: ApiKeyFile | None = setting("api_key_file")
    username: str | None = setting("username")
    password: SecretStr | None = setting("password")
    password_file: PasswordFile | None = setting("password_file")
    config_file: Path | None = setting("config_file")

    poll_interval: Duration = setting("poll_interval", gt=0, allow_inf_nan=False)
    poll_timeout: Duration = setting("poll_timeout", gt=0, allow_inf_nan=False)
    stale_after: Duration | None = setting("stale_after", gt=0, allow_inf_nan=False)
    max_concurrency: int = setting("max_concurrency", ge=1)
    max_response_bytes: int = setting("max_response_bytes", ge=1024)
    max_backoff: Duration = setting("max_backoff", gt=0, allow_inf_nan=False)
    max_series: int = setting("max_series", ge=1)

    tls_verify: bool = setting("tls_verify")
    tls_ca_file: Path | None = setting("tls_ca_file")

    collector_health: bool = setting("collector_health")
    collector_shards: bool = setting("collector_shards")

    shard: Annotated[int, BeforeValidator(_shard)] = setting("shard", ge=0)
    total_shards: int = setting("total_shards", ge=1)

    listen_address: str = setting("listen_address")
    telemetry_path: str = setting("telemetry_path")
    web_config_file: Path | None = setting("web_config_file")
    web_enable_lifecycle: bool = setting("web_enable_lifecycle")
    log_level: Annotated[Literal["debug", "info", "warn", "error"], BeforeValidator(_log_level)] = (
        setting("log_level")
    )
    log_format: Annotated[Literal["logfmt", "json"], BeforeValidator(_lower)] = setting(
        "log_format"
    )

    demo: bool = setting("demo")

    cloud_waba_ids: Annotated[list[tuple[str, str]], NoDecode] = setting("cloud_waba_ids")
    cloud_token: SecretStr | None = setting("cloud_token")
    cloud_token_file: Path | None = setting("cloud_token_file")
    cloud_graph_url: str = setting("cloud_graph_url")
    cloud_api_version: str = setting("cloud_api_version")
    cloud_interval: Duration = setting("cloud_interval", gt=0, allow_inf_nan=False)

    @field_validator("cloud_waba_ids", mode="before")
    @classmethod
    def _split_waba_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            return [parse_waba_id(v) if isinstance(v, str) else v for v in value]
        return value

    @field_validator("cloud_waba_ids")
    @classmethod
    def _unique_accounts(cls, accounts: list[tuple[str, str]]) -> list[tuple[str, str]]:
        seen: set[str] = set()
        for name, _ in accounts:
            if name in seen:
                raise ValueError(f"account name {name!r} is used twice; give name=waba_id")
            seen.add(name)
        return accounts

    @field_validator("cloud_token")
    @classmethod
    def _sendable_token(cls, token: SecretStr | None) -> SecretStr | None:
        return check_token(token)

    @field_validator("cloud_token_file")
    @classmethod
    def _usable_token_file(cls, path: Path | None) -> Path | None:
        if path is not None:
            try:
                read_token_file(path)
            except SecretFileError as err:
                raise ValueError(str(err)) from None
        return path

    @field_validator("cloud_graph_url")
    @classmethod
    def _graph_url(cls, value: str) -> str:
        return check_graph_url(value)

    @field_validator("cloud_api_version")
    @classmethod
    def _api_version(cls, value: str) -> str:
        return check_api_version(value)

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
                raise ValueError(
                    f"target name {target.name!r} is used twice{duplicate_hint(target)}"
                )
            seen.add(target.name)
        return targets

    @field_validator("web_config_file", "config_file")
    @classmethod
    def _readable_file(cls, path: Path | None) -> Path | None:
        if path is not None:
            try:
                with path.open("rb"):
                    pass
            except OSError as err:
                raise ValueError(f"{path}: {file_problem(err)}") from None
        return path

    @field_validator("tls_ca_file")
    @classmethod
    def _ca_bundle(cls, path: Path | None) -> Path | None:
        if path is not None:
            check_ca_file(path)
        return path

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
        problem = self.credentials().problem(_variable)
        if problem is not None:
            raise SettingError(*problem)
        if self.cloud_token is not None and self.cloud_token_file is not None:
            raise SettingError(
                "cloud_token_file", "WA_CLOUD_TOKEN and WA_CLOUD_TOKEN_FILE are both set; keep one"
            )
        if self.cloud_waba_ids and not self.cloud_token_set and self.config_file is None:
            raise SettingError(
                "cloud_token", "the Cloud API accounts need WA_CLOUD_TOKEN or WA_CLOUD_TOKEN_FILE"
            )
        if (
            not self.targets
            and not self.cloud_waba_ids
            and not self.demo
            and self.config_file is None
        ):
            # a Cloud API setup missing its accounts, not a fleet missing targets
            if self.cloud_token_set:
                raise SettingError(
                    "cloud_waba_ids",
                    "the Cloud API token is set but no account is: name the accounts to watch"
                    " as [NAME=]WABA_ID, comma-separated",
                )
            raise SettingError(
                "targets",
                "at least one target is required (or --cloud.waba-id, --config.file, or --demo)",
            )
        if self.shard >= self.total_shards:
            raise SettingError("shard", f"must be below the number of shards ({self.total_shards})")
        if self.stale_after is None:
            self.stale_after = 3 * self.poll_interval
        elif self.stale_after < self.poll_interval:
            raise SettingError(
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
        return Credentials.of(self)

    def env_accounts(self) -> list[CloudAccount]:
        """WA_CLOUD_WABA_IDS / --cloud.waba-id with the environment's token and Graph API."""
        return [
            CloudAccount(
                name,
                waba_id,
                graph_url=self.cloud_graph_url,
                api_version=self.cloud_api_version,
                interval=self.cloud_interval,
                token=self.cloud_token,
                token_file=self.cloud_token_file,
            )
            for name, waba_id in self.cloud_waba_ids
        ]

    def tls(self) -> TLSOptions:
        """The environment's TLS options (the defaults of every target)."""
        return TLSOptions(verify=self.tls_verify, ca_file=self.tls_ca_file)

    @property
    def cloud_token_set(self) -> bool:
        """A Cloud API token came from the environment or a flag (inline or as a file)."""
        return self.cloud_token is not None or self.cloud_token_file is not None

    def env_targets(self) -> list[Target]:
        """WA_TARGETS / --target with the environment's credentials and TLS options."""
        creds, tls = self.credentials(), self.tls()
        return [dataclasses.replace(t, credentials=creds, tls=tls) for t in self.targets]


async def _never_called(request: web.Request) -> web.StreamResponse:  # pragma: no cover
    raise web.HTTPNotFound()


def split_listen_address(value: str) -> tuple[str, int]:
    """``host:port`` or ``:port`` (all interfaces) into its parts."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not host:port")
    return host.strip("[]"), int(port)
