"""Snapshots to series: the one place metric names, label names and states live.

A target's series are rendered to exposition text once, when its snapshot changes
(:func:`render_target`); a scrape only joins the pieces per family (``exposition.py``). The
samples are the same lines in the Prometheus text format and in OpenMetrics; only the family
headers differ, so one rendering serves both.

Series of a single-instance target::

    whatsapp_up{target="wa-1"} 1
    whatsapp_socket_state{target="wa-1",state="UP"} 1
    whatsapp_socket_state{target="wa-1",state="DN"} 0   (... one per documented state)
    whatsapp_free_space_bytes{target="wa-1",directory="data"} 1.4269902848e+10

A cluster member adds ``host`` and ``container_id`` after ``target``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from exporter import __version__
from exporter.support import ContainerData, utc_seconds

if TYPE_CHECKING:
    from exporter.store import TargetSnapshot

SOCKET_STATES = ("UP", "DN", "SC", "UP receiving offline", "UNK")
ROLES = ("primary_master", "secondary_master", "coreapp")
ERROR_REASONS = (
    "timeout",
    "connect",
    "tls",
    "auth",
    "rate_limited",
    "unavailable",
    "http",
    "invalid_response",
)
LOGIN_RESULTS = ("success", "failure")


@dataclass(frozen=True)
class Family:
    name: str
    type: str  # "gauge" or "counter"
    help: str
    labels: tuple[str, ...] = ()  # the labels beyond target / host / container_id

    def header(self, openmetrics: bool) -> str:
        """HELP and TYPE lines; OpenMetrics names a counter family without ``_total``."""
        name = self.name
        if openmetrics and self.type == "counter":
            name = name.removesuffix("_total")
        return f"# HELP {name} {self.help}\n# TYPE {name} {self.type}\n"


_FAMILIES = (
    Family(
        "whatsapp_up", "gauge", "1 if the last poll of the target's /v1/support succeeded, else 0."
    ),
    Family(
        "whatsapp_free_space_bytes",
        "gauge",
        "Bytes available in a directory of the WhatsApp client (free_space_<directory>).",
        ("directory",),
    ),
    Family(
        "whatsapp_socket_state",
        "gauge",
        "Connection to the WhatsApp server (socket_conn): 1 for the current state, 0 for others.",
        ("state",),
    ),
    Family("whatsapp_socket_connected", "gauge", "1 when socket_conn is UP, else 0."),
    Family(
        "whatsapp_build_expiry_timestamp_seconds",
        "gauge",
        "When this build of the WhatsApp client expires and stops working (expire_timestamp).",
    ),
    Family("whatsapp_multiconnect_enabled", "gauge", "1 when multi_connect is true, else 0."),
    Family(
        "whatsapp_role",
        "gauge",
        "Role of the container in an HA or multiconnect cluster: 1 for the current role.",
        ("role",),
    ),
    Family(
        "whatsapp_shards_owned",
        "gauge",
        "Number of shard ids the container owns, the control shard -1 included.",
    ),
    Family("whatsapp_shard_owned", "gauge", "1 for each shard id the container owns.", ("shard",)),
    Family("whatsapp_schema_version", "gauge", "Database schema version of a table.", ("table",)),
    Family("whatsapp_registered", "gauge", "0 when the phone number is unregistered, else 1."),
    Family(
        "whatsapp_build_info",
        "gauge",
        "Build of the WhatsApp client; value 1.",
        ("version", "description"),
    ),
    Family(
        "whatsapp_container_info",
        "gauge",
        "Platform of the WhatsApp client container; value 1.",
        ("db_engine", "os_name", "os_version", "lc", "lg"),
    ),
    Family(
        "whatsapp_clock_skew_seconds",
        "gauge",
        "device_iso8601 minus the exporter's clock when the response arrived.",
    ),
    Family(
        "whatsapp_exporter_poll_duration_seconds",
        "gauge",
        "How long the last poll of the target took. Data is polled on the exporter's own "
        "schedule, not at scrape time.",
    ),
    Family(
        "whatsapp_exporter_last_success_timestamp_seconds",
        "gauge",
        "When the target last answered /v1/support well.",
    ),
    Family("whatsapp_exporter_polls_total", "counter", "Polls of the target made."),
    Family(
        "whatsapp_exporter_poll_errors_total",
        "counter",
        "Failed polls of the target by reason.",
        ("reason",),
    ),
    Family(
        "whatsapp_exporter_logins_total",
        "counter",
        "Logins (POST /v1/users/login) to the target by result.",
        ("result",),
    ),
    Family(
        "whatsapp_exporter_invalid_fields_total",
        "counter",
        "Upstream fields dropped for a wrong type; the rest of the target is still exported.",
        ("field",),
    ),
    Family(
        "whatsapp_exporter_build_info", "gauge", "Build of this exporter; value 1.", ("version",)
    ),
)

FAMILIES: dict[str, Family] = {family.name: family for family in _FAMILIES}
METRIC_NAMES = tuple(FAMILIES)

# Families that exist only while a target has fresh data (everything else is about the poll).
DATA_FAMILIES = tuple(
    name
    for name in METRIC_NAMES
    if name != "whatsapp_up" and not name.startswith("whatsapp_exporter_")
)


def escape(value: str) -> str:
    """Label value escaping shared by the text format and OpenMetrics."""
    if "\\" in value or '"' in value or "\n" in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def number(value: float) -> str:
    """A sample value as Prometheus writes it."""
    if type(value) is int:
        return str(value)
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if value != value:
        return "NaN"
    if isinstance(value, int) or (value.is_integer() and abs(value) < 1e15):
        return str(int(value))
    return repr(float(value))


def _label(name: str, value: str) -> str:
    """``,name="value"``: one label after the target's (escaped)."""
    return f',{name}="{escape(value)}"'


# Constant label suffixes of the documented states and reasons, built once.
_STATE_LABELS = {state: _label("state", state) for state in SOCKET_STATES}
_ROLE_LABELS = {role: _label("role", role) for role in ROLES}
_REASON_LABELS = tuple((reason, _label("reason", reason)) for reason in ERROR_REASONS)
_RESULT_LABELS = tuple((result, _label("result", result)) for result in LOGIN_RESULTS)


class _Lines:
    """Per-family sample lines of one target, in the order they are rendered."""

    __slots__ = ("lines",)

    def __init__(self) -> None:
        self.lines: dict[str, list[str]] = {}

    def add(self, family: str, labels: str, value: float, extra: str = "") -> None:
        """One sample; ``extra`` is the labels after the target's, each ``,name="value"``."""
        lines = self.lines.get(family)
        if lines is None:
            lines = self.lines[family] = []
        lines.append(f"{family}{{{labels}{extra}}} {number(value)}\n")

    def states(
        self, family: str, labels: str, label: str, known: dict[str, str], current: str
    ) -> None:
        """One series per documented state (zeros too), plus an undocumented current one."""
        lines = self.lines.get(family)
        if lines is None:
            lines = self.lines[family] = []
        head = f"{family}{{{labels}"
        for state, extra in known.items():
            lines.append(f"{head}{extra}}} {1 if state == current else 0}\n")
        if current not in known:
            lines.append(f"{head}{_label(label, current)}}} 1\n")


def render_target(snapshot: TargetSnapshot, *, with_logins: bool) -> dict[str, str]:
    """All series of one target, as text per family name."""
    out = _Lines()
    base = f'target="{escape(snapshot.name)}"'
    out.add("whatsapp_up", base, 1 if snapshot.up else 0)
    if snapshot.support is not None:
        for container in snapshot.support.containers:
            _render_container(out, base, container, snapshot.received_at)
    if snapshot.last_duration is not None:
        out.add("whatsapp_exporter_poll_duration_seconds", base, snapshot.last_duration)
    if snapshot.last_success is not None:
        out.add("whatsapp_exporter_last_success_timestamp_seconds", base, snapshot.last_success)
    out.add("whatsapp_exporter_polls_total", base, snapshot.polls)
    errors = snapshot.errors
    for reason, extra in _REASON_LABELS:
        out.add("whatsapp_exporter_poll_errors_total", base, errors.get(reason, 0), extra)
    if with_logins:
        logins = snapshot.logins
        for result, extra in _RESULT_LABELS:
            out.add("whatsapp_exporter_logins_total", base, logins.get(result, 0), extra)
    for name, count in sorted(snapshot.invalid_fields.items()):
        out.add("whatsapp_exporter_invalid_fields_total", base, count, _label("field", name))
    return {family: "".join(lines) for family, lines in out.lines.items()}


def _render_container(
    out: _Lines, base: str, container: ContainerData, received_at: float | None
) -> None:
    labels = base
    if container.host is not None:
        container_id = escape(container.container_id or "")
        labels += f',host="{escape(container.host)}",container_id="{container_id}"'
    c = container.fields
    for directory, free in c.free_space.items():
        out.add("whatsapp_free_space_bytes", labels, free, _label("directory", directory))
    if c.socket_conn is not None:
        out.states("whatsapp_socket_state", labels, "state", _STATE_LABELS, c.socket_conn)
        out.add("whatsapp_socket_connected", labels, 1 if c.socket_conn == "UP" else 0)
    if c.expire_timestamp is not None:
        out.add("whatsapp_build_expiry_timestamp_seconds", labels, utc_seconds(c.expire_timestamp))
    if c.multi_connect is not None:
        out.add("whatsapp_multiconnect_enabled", labels, 1 if c.multi_connect else 0)
    if c.role is not None:
        out.states("whatsapp_role", labels, "role", _ROLE_LABELS, c.role)
    if c.shards is not None:
        out.add("whatsapp_shards_owned", labels, len(c.shards))
        for shard in sorted(c.shards):
            out.add("whatsapp_shard_owned", labels, 1, f',shard="{shard}"')
    for table, version in (c.schema_ or {}).items():
        out.add("whatsapp_schema_version", labels, version, _label("table", table))
    if c.registered is not None:
        out.add("whatsapp_registered", labels, 1 if c.registered else 0)
    if c.version is not None or c.description is not None:
        out.add(
            "whatsapp_build_info",
            labels,
            1,
            _label("version", c.version or "") + _label("description", c.description or ""),
        )
    if any(v is not None for v in (c.db_engine, c.os_name, c.os_version, c.lc, c.lg)):
        out.add(
            "whatsapp_container_info",
            labels,
            1,
            _label("db_engine", c.db_engine or "")
            + _label("os_name", c.os_name or "")
            + _label("os_version", c.os_version or "")
            + _label("lc", c.lc or "")
            + _label("lg", c.lg or ""),
        )
    if c.device_iso8601 is not None and received_at is not None:
        out.add("whatsapp_clock_skew_seconds", labels, utc_seconds(c.device_iso8601) - received_at)


def exporter_info() -> dict[str, str]:
    """The exporter's own build series, not tied to a target."""
    return {
        "whatsapp_exporter_build_info": (
            f'whatsapp_exporter_build_info{{version="{escape(__version__)}"}} 1\n'
        )
    }
