"""The table of settings: one row per setting, the only place its names and help are written.

Each row gives the model's field, the flag, the variables, the help text, the value's shape and
the default. The settings model takes its aliases and defaults from it, the command line its
flags, metavars and help, the messages their names, and tests hold the README and
``docs/configuration.md`` to it.

Every flag's variable is ``WA_`` + the flag's name upper-cased with ``.`` and ``-`` as ``_``
(``--web.listen-address`` -> ``WA_WEB_LISTEN_ADDRESS``); the 0.1 name ``WA_<FIELD>``
(``WA_LISTEN_ADDRESS``) stays accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import AliasChoices, Field

# What a value looks like; it picks the metavar in --help and how a default is shown.
Kind = Literal[
    "duration", "file", "number", "switch", "shard", "address", "path", "word", "secret", "list"
]
_METAVARS: dict[Kind, str] = {
    "duration": "DURATION",
    "file": "FILE",
    "number": "N",
    "shard": "SHARD",
    "address": "ADDRESS",
    "path": "PATH",
}

_DURATION = re.compile(
    r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?"
)
_DURATION_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


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


def flag_env_name(flag: str) -> str:
    """``--web.listen-address`` -> ``WA_WEB_LISTEN_ADDRESS``."""
    return "WA_" + re.sub(r"[.-]", "_", flag.lstrip("-")).upper()


@dataclass(frozen=True)
class Option:
    """One setting. ``flag`` is None for a variable only: secrets stay out of the process list."""

    field: str
    flag: str | None
    help: str
    kind: Kind
    default: Any = None
    # How --help shows the default when the value alone does not say it (None: from the value).
    default_text: str | None = None
    # The variables, preferred first; empty: the flag's, then WA_<FIELD> (the 0.1 name).
    variables: tuple[str, ...] = ()
    # What --help shows as the value (None: from the kind).
    value_text: str | None = None

    def __post_init__(self) -> None:
        if not self.variables:
            names = [flag_env_name(self.flag)] if self.flag else []
            legacy = f"WA_{self.field.upper()}"
            if legacy not in names:
                names.append(legacy)
            object.__setattr__(self, "variables", tuple(names))

    @property
    def variable(self) -> str:
        """The preferred variable."""
        return self.variables[0]

    @property
    def metavar(self) -> str:
        if self.value_text is not None:
            return self.value_text
        return _METAVARS.get(self.kind, self.field.split("_")[-1].upper())

    @property
    def shown_default(self) -> str | None:
        """The default as --help writes it, or None when there is none to show."""
        if self.default_text is not None:
            return self.default_text
        if self.default is None or self.kind == "list":
            return None
        if self.kind == "duration":
            return format_duration(self.default)
        if self.kind == "switch":
            return str(self.default).lower()
        return str(self.default)


_MiB = 1024 * 1024

OPTIONS: dict[str, Option] = {
    o.field: o
    for o in (
        Option(
            "targets",
            "--target",
            "a WhatsApp Business API client to poll, [NAME=]URL (repeatable)",
            "list",
            variables=("WA_TARGETS",),
            value_text="[NAME=]URL",
        ),
        Option("api_key", None, "API key, sent as 'Authorization: Apikey <key>'", "secret"),
        Option("api_key_file", None, "file holding the API key", "file"),
        Option("username", None, "user for POST /v1/users/login", "word"),
        Option("password", None, "password for the login", "secret"),
        Option("password_file", None, "file holding the password", "file"),
        Option(
            "config_file",
            "--config.file",
            "YAML file: named credentials, targets, target files",
            "file",
        ),
        Option(
            "poll_interval", "--poll.interval", "time between polls of one target", "duration", 30.0
        ),
        Option("poll_timeout", "--poll.timeout", "time before one poll gives up", "duration", 10.0),
        Option(
            "stale_after",
            "--poll.stale-after",
            "age of the last success when a target's data is withdrawn",
            "duration",
            default_text="3 x interval",
        ),
        Option(
            "max_concurrency",
            "--poll.max-concurrency",
            "polls in flight at once: healthy targets share this many places, failing ones"
            " a quarter as many of their own; a poll frees its place after 1s",
            "number",
            32,
        ),
        Option(
            "max_response_bytes",
            "--poll.max-response-bytes",
            "largest upstream body accepted",
            "number",
            4 * _MiB,
        ),
        Option(
            "max_backoff",
            "--poll.max-backoff",
            "longest wait between polls of a failing target",
            "duration",
            300.0,
        ),
        Option(
            "max_series", "--poll.max-series", "most series one target may export", "number", 10000
        ),
        Option("tls_verify", "--tls.verify", "verify the upstream's certificate", "switch", True),
        Option("tls_ca_file", "--tls.ca-file", "CA bundle for the upstream's certificate", "file"),
        Option(
            "collector_health", "--collector.health", "also poll GET /v1/health", "switch", True
        ),
        Option(
            "collector_shards",
            "--collector.shards",
            "also poll GET /v1/account/shards (multiconnect targets)",
            "switch",
            True,
        ),
        Option(
            "shard",
            "--shard",
            "this replica's shard: a number or a StatefulSet Pod name",
            "shard",
            0,
        ),
        Option(
            "total_shards", "--total-shards", "number of replicas sharing the targets", "number", 1
        ),
        Option(
            "listen_address", "--web.listen-address", "host:port to serve on", "address", ":10042"
        ),
        Option(
            "telemetry_path",
            "--web.telemetry-path",
            "path of the metrics endpoint",
            "path",
            "/metrics",
        ),
        Option(
            "web_config_file",
            "--web.config.file",
            "exporter-toolkit web config (TLS, basic auth, headers)",
            "file",
        ),
        Option(
            "web_enable_lifecycle",
            "--web.enable-lifecycle",
            "serve POST /-/reload",
            "switch",
            False,
        ),
        Option("log_level", "--log.level", "debug, info, warn or error", "word", "info"),
        Option("log_format", "--log.format", "logfmt or json", "word", "logfmt"),
        Option(
            "demo",
            "--demo",
            "poll a built-in simulated WhatsApp Business API (no setup needed)",
            "switch",
            False,
        ),
        Option(
            "cloud_waba_ids",
            "--cloud.waba-id",
            "a Cloud API WhatsApp Business Account to watch, [NAME=]WABA_ID (repeatable)",
            "list",
            variables=("WA_CLOUD_WABA_IDS",),
            value_text="[NAME=]WABA_ID",
        ),
        Option(
            "cloud_token",
            None,
            "Graph API access token of a system user (whatsapp_business_management)",
            "secret",
            variables=("WA_CLOUD_TOKEN",),
        ),
        Option(
            "cloud_token_file",
            None,
            "file holding the Graph API token, read again at every poll",
            "file",
            variables=("WA_CLOUD_TOKEN_FILE",),
        ),
        Option(
            "cloud_graph_url",
            "--cloud.graph-url",
            "base URL of the Graph API",
            "address",
            "https://graph.facebook.com",
            value_text="URL",
        ),
        Option(
            "cloud_api_version",
            "--cloud.api-version",
            "Graph API version, the prefix of every path",
            "word",
            "v24.0",
            value_text="VERSION",
        ),
        Option(
            "cloud_interval",
            "--cloud.interval",
            "time between polls of one Cloud API account; at least 10s",
            "duration",
            300.0,
        ),
    )
}


def setting(name: str, **constraints: Any) -> Any:
    """The model's ``Field`` for a row of the table: its default, variables and help."""
    option = OPTIONS[name]
    if option.kind == "list":
        constraints["default_factory"] = list
    else:
        constraints["default"] = option.default
    return Field(
        validation_alias=AliasChoices(*option.variables), description=option.help, **constraints
    )


KNOWN_VARIABLES = frozenset(name for o in OPTIONS.values() for name in o.variables)
# Any variable, and the field's own name upper-cased, -> the field.
FIELD_OF = {name: o.field for o in OPTIONS.values() for name in (*o.variables, o.field.upper())}
