"""Settings: environment variables (prefix ``WA_``), Go-exporter-style flags, secret files.

A flag wins over its variable. Anything invalid stops the program before it polls, with one line
that names the setting (see ``exporter.__main__``), because a monitoring sidecar that starts with
a half-understood configuration is worse than one that refuses to start.
"""

from __future__ import annotations

import argparse
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from yarl import URL

API_KEY_LENGTH = (12, 128)


@dataclass(frozen=True)
class Target:
    """One upstream WhatsApp Business API client (a single instance or a cluster's Webapp)."""

    name: str
    url: str

    @classmethod
    def parse(cls, text: str) -> Target:
        """Parse ``name=url`` or ``url`` (the name then defaults to ``host:port``)."""
        name, sep, url = text.strip().partition("=")
        if not sep:
            name, url = "", text.strip()
        parsed = URL(url.strip())
        shown = _redact(url.strip())
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"{shown!r} is not an http:// or https:// URL with a host")
        if parsed.user or parsed.password:
            raise ValueError(
                "credentials in a target URL are not allowed; use WA_USERNAME/WA_PASSWORD"
            )
        if parsed.query_string or parsed.fragment:
            raise ValueError(f"{shown!r} must not have a query or fragment")
        host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
        name = name.strip() or f"{host}:{parsed.explicit_port or parsed.port}"
        return cls(name=name, url=str(parsed).rstrip("/"))


def _redact(url: str) -> str:
    """A URL fit for an error message: no user info, no query, no fragment (they may be secret)."""
    url = re.sub(r"^([^@/]*://)?[^@/]*@", r"\1***@", url)
    return re.split(r"[?#]", url, maxsplit=1)[0]


class Settings(BaseSettings):
    """Everything the exporter can be told; names mirror CONTRACT.md."""

    model_config = SettingsConfigDict(
        env_prefix="WA_", extra="ignore", validate_default=True, case_sensitive=False
    )

    targets: Annotated[list[Target], NoDecode] = Field(default_factory=list)
    api_key: SecretStr | None = None
    api_key_file: Path | None = None
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None

    poll_interval: float = Field(30.0, gt=0, allow_inf_nan=False)
    poll_timeout: float = Field(10.0, gt=0, allow_inf_nan=False)
    stale_after: float | None = Field(None, gt=0, allow_inf_nan=False)
    max_concurrency: int = Field(32, ge=1)
    max_response_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    max_backoff: float = Field(300.0, gt=0, allow_inf_nan=False)

    tls_verify: bool = True
    tls_ca_file: Path | None = None

    listen_address: str = ":10042"
    telemetry_path: str = "/metrics"
    web_config_file: Path | None = None
    log_level: Literal["debug", "info", "warn", "error"] = "info"
    log_format: Literal["logfmt", "json"] = "logfmt"

    demo: bool = False

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

    @field_validator("api_key_file", "password_file", "tls_ca_file", "web_config_file")
    @classmethod
    def _readable_file(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError(f"{path} is not a readable file")
        return path

    @field_validator("tls_ca_file")
    @classmethod
    def _ca_bundle(cls, path: Path | None) -> Path | None:
        """Load it now: a bad bundle found at the first poll would fail every poll as ``tls``."""
        if path is not None:
            try:
                ssl.create_default_context(cafile=str(path))
            except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
                raise ValueError(
                    f"{path} holds no usable CA certificate ({err.__class__.__name__})"
                ) from None
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
    def _absolute_path(cls, value: str) -> str:
        if not value.startswith("/") or value in ("/", "/-/healthy", "/-/ready"):
            raise ValueError("must be an absolute path other than /, /-/healthy and /-/ready")
        return value

    @model_validator(mode="after")
    def _derived(self) -> Settings:
        if self.api_key_file is not None:
            self.api_key = SecretStr(_read_secret(self.api_key_file, "api_key_file"))
            try:
                check_api_key(self.api_key.get_secret_value())
            except ValueError as err:
                raise _SettingError("api_key_file", str(err)) from None
        if self.password_file is not None:
            self.password = SecretStr(_read_secret(self.password_file, "password_file"))
        if (self.username is None) != (self.password is None):
            raise _SettingError("username", "WA_USERNAME and WA_PASSWORD must be set together")
        if not self.targets and not self.demo:
            raise _SettingError("targets", "at least one target is required (or use --demo)")
        if self.stale_after is None:
            self.stale_after = 3 * self.poll_interval
        return self

    @property
    def stale_after_seconds(self) -> float:
        """The stale-after age, always resolved after validation."""
        assert self.stale_after is not None
        return self.stale_after


class _SettingError(ValueError):
    """A cross-field error that still names its setting."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


def _read_secret(path: Path, setting: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise _SettingError(setting, f"cannot read {path}: {err.__class__.__name__}") from None


def check_api_key(key: str) -> None:
    """Meta's Webapp accepts keys of 12 to 128 characters; anything else can never work."""
    low, high = API_KEY_LENGTH
    if not low <= len(key) <= high:
        raise ValueError(f"must be {low} to {high} characters long (got {len(key)})")


def split_listen_address(value: str) -> tuple[str, int]:
    """``host:port`` or ``:port`` (all interfaces) into its parts."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not host:port")
    return host.strip("[]"), int(port)


# -- command line -----------------------------------------------------------------------------

# flag -> (field, help). Every flag has the WA_<FIELD> variable too.
FLAGS: dict[str, tuple[str, str]] = {
    "--poll.interval": ("poll_interval", "seconds between polls of one target"),
    "--poll.timeout": ("poll_timeout", "seconds before one poll gives up"),
    "--poll.stale-after": ("stale_after", "seconds after the last success when data is withdrawn"),
    "--poll.max-concurrency": ("max_concurrency", "polls in flight at once, all targets"),
    "--poll.max-response-bytes": ("max_response_bytes", "largest upstream body accepted"),
    "--poll.max-backoff": ("max_backoff", "longest wait between polls of a failing target"),
    "--tls.ca-file": ("tls_ca_file", "CA bundle for the upstream's certificate"),
    "--web.listen-address": ("listen_address", "host:port to serve on"),
    "--web.telemetry-path": ("telemetry_path", "path of the metrics endpoint"),
    "--web.config.file": ("web_config_file", "exporter-toolkit web config (TLS, basic auth)"),
    "--log.level": ("log_level", "debug, info, warn or error"),
    "--log.format": ("log_format", "logfmt or json"),
}


def build_parser() -> argparse.ArgumentParser:
    """Flags in the style of the Go exporters; defaults stay None so variables apply."""
    parser = argparse.ArgumentParser(
        prog="whatsapp-support-exporter",
        description="Export the WhatsApp Business API On-Premises /v1/support data to Prometheus."
        " Every flag also has a WA_* environment variable; the flag wins.",
    )
    parser.add_argument(
        "--target",
        action="append",
        dest="targets",
        metavar="[NAME=]URL",
        help="a WhatsApp Business API client to poll (repeatable; WA_TARGETS)",
    )
    for flag, (field, text) in FLAGS.items():
        parser.add_argument(flag, dest=field, metavar=field.split("_")[-1].upper(), help=text)
    parser.add_argument(
        "--tls.verify",
        dest="tls_verify",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="verify the upstream's certificate (WA_TLS_VERIFY, default true)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        default=None,
        help="poll a built-in simulated WhatsApp Business API (no setup needed)",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    return parser


class SettingsError(Exception):
    """Raised with a single line naming the setting at fault."""


def env_name(field: str) -> str:
    return f"WA_{field.upper()}"


def flag_name(field: str) -> str | None:
    if field == "targets":
        return "--target"
    for flag, (name, _) in FLAGS.items():
        if name == field:
            return flag
    return None


def load_settings(argv: list[str] | None = None, **overrides: Any) -> Settings:
    """Build Settings from flags (winning) and the environment; raise SettingsError on bad input."""
    args = build_parser().parse_args(argv)
    values = {k: v for k, v in vars(args).items() if v is not None and k != "version"}
    values.update(overrides)
    try:
        return Settings(**values)
    except ValidationError as err:
        raise SettingsError(describe(err)) from None


def describe(err: ValidationError) -> str:
    """The first problem as one line: which setting, what is wrong. Never echoes a value."""
    first = err.errors(include_input=False, include_url=False)[0]
    loc = [str(part) for part in first["loc"]]
    field = loc[0] if loc else ""
    message = first["msg"].removeprefix("Value error, ")
    ctx_err = (first.get("ctx") or {}).get("error")
    if isinstance(ctx_err, _SettingError):
        field = ctx_err.setting
    names = env_name(field) if field else "settings"
    flag = flag_name(field)
    if flag:
        names += f" ({flag})"
    more = len(err.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else ""
    return f"invalid setting {names}: {message}{suffix}"
