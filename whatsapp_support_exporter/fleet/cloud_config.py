"""The ``cloud`` section of the configuration file, and the Cloud API accounts of a fleet.

```yaml
cloud:
  graph_url: https://graph.facebook.com      # default: WA_CLOUD_GRAPH_URL
  api_version: v24.0                          # default: WA_CLOUD_API_VERSION
  interval: 5m                                # default: WA_CLOUD_INTERVAL; at least 10s
  token_file: /secrets/meta/token             # or token:; default: WA_CLOUD_TOKEN(_FILE)
  accounts:
    - {name: acme, waba_id: "102290129340398", token_file: /secrets/acme/token}
```
The environment's accounts (``WA_CLOUD_WABA_IDS``) come first and take the environment's token,
else the section's; the file's accounts take their own token file, else the section's token,
else the environment's. Account names are unique across both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from whatsapp_support_exporter.fleet.options import parse_duration
from whatsapp_support_exporter.fleet.settings import Settings
from whatsapp_support_exporter.upstream.cloud.account import (
    MIN_CLOUD_INTERVAL,
    CloudAccount,
    check_api_version,
    check_graph_url,
    check_token,
    check_waba_id,
    read_token_file,
)
from whatsapp_support_exporter.upstream.onprem.target import SecretFileError


class CloudConfigError(Exception):
    """One line: where in the configuration the problem is, and what it is."""


def _resolve(path: Path, info: ValidationInfo) -> Path:
    """Relative paths are relative to the configuration file, as in Prometheus."""
    base = (info.context or {}).get("base")
    return path if path.is_absolute() or base is None else Path(base) / path


def _token_file(path: Path | None, info: ValidationInfo) -> Path | None:
    if path is None:
        return None
    path = _resolve(path, info)
    try:
        read_token_file(path)
    except SecretFileError as err:
        raise ValueError(str(err)) from None
    return path


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CloudAccountEntry(_Model):
    name: StrictStr = Field(min_length=1)
    waba_id: StrictStr | StrictInt
    token_file: Path | None = None

    @field_validator("waba_id")
    @classmethod
    def _digits(cls, value: str | int) -> str:
        return check_waba_id(str(value))

    @field_validator("token_file")
    @classmethod
    def _usable_token_file(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        return _token_file(path, info)


class CloudSection(_Model):
    graph_url: StrictStr | None = None
    api_version: StrictStr | None = None
    interval: StrictStr | StrictInt | float | None = None
    token: SecretStr | None = None
    token_file: Path | None = None
    accounts: list[CloudAccountEntry] = Field(default_factory=list)

    @field_validator("graph_url")
    @classmethod
    def _graph_url(cls, value: str | None) -> str | None:
        return None if value is None else check_graph_url(value)

    @field_validator("api_version")
    @classmethod
    def _api_version(cls, value: str | None) -> str | None:
        return None if value is None else check_api_version(value)

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: Any) -> float | None:
        if value is None:
            return None
        seconds = parse_duration(value)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise ValueError("is not a duration: use seconds (300) or 5m, 1m30s")
        if not seconds >= MIN_CLOUD_INTERVAL:
            raise ValueError(
                f"must be at least {MIN_CLOUD_INTERVAL:g}s (the Graph API allows about 200 calls"
                " per hour and account)"
            )
        return float(seconds)

    @field_validator("token_file")
    @classmethod
    def _usable_token_file(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        return _token_file(path, info)

    @field_validator("token")
    @classmethod
    def _sendable_token(cls, token: SecretStr | None) -> SecretStr | None:
        return check_token(token)

    @model_validator(mode="after")
    def _one_token(self) -> CloudSection:
        if self.token is not None and self.token_file is not None:
            raise ValueError("token and token_file are both set; keep one")
        return self


def load_accounts(
    settings: Settings, section: CloudSection | None, path: Path | None
) -> list[CloudAccount]:
    """Every Cloud API account of the fleet (every shard's), the environment's first."""
    env_token = (settings.cloud_token, settings.cloud_token_file)
    token: tuple[SecretStr | None, Path | None] = env_token
    graph_url, api_version = settings.cloud_graph_url, settings.cloud_api_version
    interval = settings.cloud_interval
    if section is not None:
        if section.token is not None or section.token_file is not None:
            token = (section.token, section.token_file)
        graph_url = section.graph_url or graph_url
        api_version = section.api_version or api_version
        interval = section.interval if isinstance(section.interval, float) else interval
    accounts: list[CloudAccount] = []
    places: dict[str, str] = {}

    def add(
        name: str, waba_id: str, chosen: tuple[SecretStr | None, Path | None], where: str
    ) -> None:
        if name in places:
            raise CloudConfigError(
                f'{where}: account name "{name}" is also defined at {places[name]}'
            )
        if chosen == (None, None):
            raise CloudConfigError(
                f"{where}: no token for this account (token or token_file in the cloud section,"
                " or WA_CLOUD_TOKEN / WA_CLOUD_TOKEN_FILE)"
            )
        places[name] = where
        accounts.append(CloudAccount(name, waba_id, graph_url, api_version, interval, *chosen))

    for name, waba_id in settings.cloud_waba_ids:
        add(name, waba_id, env_token if env_token != (None, None) else token, "WA_CLOUD_WABA_IDS")
    for i, entry in enumerate(section.accounts if section is not None else ()):
        chosen = (None, entry.token_file) if entry.token_file is not None else token
        add(entry.name, str(entry.waba_id), chosen, f"{path}: cloud.accounts[{i}]")
    return accounts
