"""Snapshots to series: the one place metric names, label names, states and values live.

Each metric family is one :class:`Family` object binding its name, type, help and labels; a
container family also binds how its samples are taken from a container (as kube-state-metrics'
``FamilyGenerator`` does). A target's series are rendered to exposition text once, when its
snapshot changes (:func:`render_target`); a scrape only joins the pieces per family
(``exposition.py``). The samples are the same lines in the Prometheus text format and in
OpenMetrics; only the family headers differ, so one rendering serves both.

Series of a single-instance target::

    whatsapp_up{target="wa-1"} 1
    whatsapp_socket_state{target="wa-1",state="UP"} 1
    whatsapp_socket_state{target="wa-1",state="DN"} 0   (... one per documented state)
    whatsapp_free_space_bytes{target="wa-1",directory="data"} 1.4269902848e+10

A cluster member adds ``host`` and ``container_id`` after ``target``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from whatsapp_support_exporter import __version__
from whatsapp_support_exporter.output.cloud_families import CLOUD_FAMILIES
from whatsapp_support_exporter.output.family import (
    COUNTER,
    GAUGE,
    INVALID_FIELDS,
    Family,
    Lines,
    Sample,
    escape,
    extra_labels,
    flag,
    number,
    one,
    states,
)
from whatsapp_support_exporter.output.snapshot import TargetSnapshot
from whatsapp_support_exporter.upstream.errors import Reason
from whatsapp_support_exporter.upstream.onprem.support import ContainerFields, Support, utc_seconds

SOCKET_STATES = ("UP", "DN", "SC", "UP receiving offline", "UNK")
ROLES = ("primary_master", "secondary_master", "coreapp")
GATEWAY_STATES = ("connected", "connecting", "disconnected", "uninitialized", "unregistered")
API_STATUSES = ("stable", "experimental", "deprecated")
ERROR_REASONS = tuple(Reason)
LOGIN_RESULTS = ("success", "failure")
# The optional endpoints polled beside /v1/support (--collector.health, --collector.shards):
# the values of the public `collector` label.
OPTIONAL_ENDPOINTS = ("health", "shards")


def _free_space(c: ContainerFields, _: float | None) -> list[Sample]:
    return [((directory,), free) for directory, free in c.free_space.items()]


def _socket_state(c: ContainerFields, _: float | None) -> Sequence[Sample]:
    return () if c.socket_conn is None else states(SOCKET_STATES, c.socket_conn)


def _socket_connected(c: ContainerFields, _: float | None) -> Sequence[Sample]:
    return flag(None if c.socket_conn is None else c.socket_conn == "UP")


def _expiry(c: ContainerFields, _: float | None) -> Sequence[Sample]:
    return one(None if c.expire_timestamp is None else utc_seconds(c.expire_timestamp))


def _role(c: ContainerFields, _: float | None) -> Sequence[Sample]:
    return () if c.role is None else states(ROLES, c.role)


def _shards_owned(c: ContainerFields, _: float | None) -> Sequence[Sample]:
    return one(None if c.shards is None else len(c.shards))


def _shard_owned(c: ContainerFields, _: float | None) -> list[Sample]:
    return [((str(shard),), 1) for shard in sorted(c.shards or ())]


def _schema(c: ContainerFields, _: float | None) -> list[Sample]:
    return [((table,), version) for table, version in (c.schema_ or {}).items()]


def _build_info(c: ContainerFields, _: float | None) -> Sequence[Sample]:
    if c.version is None and c.description is None:
        return ()
    return (((c.version or "", c.description or ""), 1),)


def _container_info(c: ContainerFields, _: float | None) -> Sequence[Sample]:
    values = (c.db_engine, c.os_name, c.os_version, c.lc, c.lg)
    if values.count(None) == len(values):
        return ()
    return ((tuple(v or "" for v in values), 1),)


def _clock_skew(c: ContainerFields, received_at: float | None) -> Sequence[Sample]:
    if c.device_iso8601 is None or received_at is None:
        return ()
    # a clock given in whole seconds is compared with ours in whole seconds: otherwise the
    # truncation alone reads as up to a second of skew
    ours = math.floor(received_at) if c.device_iso8601.microsecond == 0 else received_at
    return one(utc_seconds(c.device_iso8601) - ours)


UP = Family(
    "whatsapp_up", GAUGE, "1 if the last poll of the target's /v1/support succeeded, else 0."
)
_CONTAINER_FAMILIES = (
    Family(
        "whatsapp_free_space_bytes",
        GAUGE,
        "Bytes available in a directory of the WhatsApp client (free_space_<directory>).",
        ("directory",),
        _free_space,
    ),
    Family(
        "whatsapp_socket_state",
        GAUGE,
        "Connection to the WhatsApp server (socket_conn): 1 for the current state, 0 for others.",
        ("state",),
        _socket_state,
    ),
    Family(
        "whatsapp_socket_connected",
        GAUGE,
        "1 when socket_conn is UP, else 0.",
        samples=_socket_connected,
    ),
    Family(
        "whatsapp_build_expiry_timestamp_seconds",
        GAUGE,
        "When this build of the WhatsApp client expires and stops working (expire_timestamp).",
        samples=_expiry,
    ),
    Family(
        "whatsapp_multiconnect_enabled",
        GAUGE,
        "1 when multi_connect is true, else 0.",
        samples=lambda c, _: flag(c.multi_connect),
    ),
    Family(
        "whatsapp_role",
        GAUGE,
        "Role of the container in an HA or multiconnect cluster: 1 for the current role.",
        ("role",),
        _role,
    ),
    Family(
        "whatsapp_shards_owned",
        GAUGE,
        "Number of shard ids the container owns, the control shard -1 included.",
        samples=_shards_owned,
    ),
    Family(
        "whatsapp_shard_owned",
        GAUGE,
        "1 for each shard id the container owns.",
        ("shard",),
        _shard_owned,
    ),
    Family(
        "whatsapp_schema_version",
        GAUGE,
        "Database schema version of a table.",
        ("table",),
        _schema,
    ),
    Family(
        "whatsapp_registered",
        GAUGE,
        "0 when the phone number is unregistered, else 1.",
        samples=lambda c, _: flag(c.registered),
    ),
    Family(
        "whatsapp_build_info",
        GAUGE,
        "Build of the WhatsApp client; value 1.",
        ("version", "description"),
        _build_info,
    ),
    Family(
        "whatsapp_container_info",
        GAUGE,
        "Platform of the WhatsApp client container; value 1.",
        ("db_engine", "os_name", "os_version", "lc", "lg"),
        _container_info,
    ),
    Family(
        "whatsapp_clock_skew_seconds",
        GAUGE,
        "device_iso8601 minus the exporter's clock when the response arrived.",
        samples=_clock_skew,
    ),
)
# what the render loop needs of each container family, looked up once
_CONTAINER_PLAN = tuple(
    (f, f.name, len(f.labels), f.samples) for f in _CONTAINER_FAMILIES if f.samples is not None
)
assert len(_CONTAINER_PLAN) == len(_CONTAINER_FAMILIES), "a container family without samples"
GATEWAY_STATUS = Family(
    "whatsapp_gateway_status",
    GAUGE,
    "Gateway of the container from /v1/health (gateway_status): 1 for the current state.",
    ("state",),
)
SHARDS_CONFIGURED = Family(
    "whatsapp_shards_configured",
    GAUGE,
    "Shards the cluster is configured for (GET /v1/account/shards).",
)
API_STATUS = Family(
    "whatsapp_api_status",
    GAUGE,
    "meta.api_status of the /v1/support answer: 1 for the current status.",
    ("status",),
)
TARGET_INFO = Family(
    "whatsapp_target_info",
    GAUGE,
    "Labels given to the target in the configuration file; value 1.",
)
POLL_DURATION = Family(
    "whatsapp_exporter_poll_duration_seconds",
    GAUGE,
    "How long the last poll of the target took. Data is polled on the exporter's own "
    "schedule, not at scrape time.",
)
LAST_SUCCESS = Family(
    "whatsapp_exporter_last_success_timestamp_seconds",
    GAUGE,
    "When the target last answered /v1/support well.",
)
POLLS = Family("whatsapp_exporter_polls_total", COUNTER, "Polls of the target made.")
POLL_ERRORS = Family(
    "whatsapp_exporter_poll_errors_total",
    COUNTER,
    "Failed polls of the target by reason.",
    ("reason",),
)
LOGINS = Family(
    "whatsapp_exporter_logins_total",
    COUNTER,
    "Logins (POST /v1/users/login) to the target by result; failure means the upstream rejected "
    "the credentials.",
    ("result",),
)
COLLECTOR_SUCCESS = Family(
    "whatsapp_exporter_collector_success",
    GAUGE,
    "1 if the last request of an optional endpoint (health, shards) worked, else 0.",
    ("collector",),
)
COLLECTOR_ERRORS = Family(
    "whatsapp_exporter_collector_errors_total",
    COUNTER,
    "Failed requests of an optional endpoint (health, shards) by reason.",
    ("collector", "reason"),
)
EXPORTER_BUILD_INFO = Family(
    "whatsapp_exporter_build_info", GAUGE, "Build of this exporter; value 1.", ("version",)
)
# Process-wide families, rendered by the fleet and served with the targets' series.
CONFIG_RELOAD_SUCCESSFUL = Family(
    "whatsapp_exporter_config_last_reload_successful",
    GAUGE,
    "1 if the last load or reload of the configuration worked, else 0.",
)
CONFIG_RELOAD_TIMESTAMP = Family(
    "whatsapp_exporter_config_last_reload_success_timestamp_seconds",
    GAUGE,
    "When the configuration was last loaded or reloaded successfully.",
)
SHARD_ORDINAL = Family(
    "whatsapp_exporter_shard_ordinal", GAUGE, "The shard of the fleet this replica polls."
)
TOTAL_SHARDS = Family(
    "whatsapp_exporter_total_shards", GAUGE, "Replicas the fleet is sharded over."
)

# Exposition order: the order of this table.
_FAMILIES = (
    UP,
    *_CONTAINER_FAMILIES,
    GATEWAY_STATUS,
    SHARDS_CONFIGURED,
    API_STATUS,
    TARGET_INFO,
    POLL_DURATION,
    LAST_SUCCESS,
    POLLS,
    POLL_ERRORS,
    LOGINS,
    INVALID_FIELDS,
    COLLECTOR_SUCCESS,
    COLLECTOR_ERRORS,
    EXPORTER_BUILD_INFO,
    CONFIG_RELOAD_SUCCESSFUL,
    CONFIG_RELOAD_TIMESTAMP,
    SHARD_ORDINAL,
    TOTAL_SHARDS,
    *CLOUD_FAMILIES,
)

FAMILIES: dict[str, Family] = {family.name: family for family in _FAMILIES}
METRIC_NAMES = tuple(FAMILIES)


def _render_containers(out: Lines, base: str, support: Support, received_at: float | None) -> None:
    """The container families' lines: the hot loop of a poll (13 families per container)."""
    lists: list[list[str]] = [[] for _ in _CONTAINER_FAMILIES]
    for container in support.containers:
        labels = _container_labels(base, container.host, container.container_id)
        fields = container.fields
        # _append inlined: a call per family and container cost 8% of the render
        for (family, name, arity, samples), lines in zip(_CONTAINER_PLAN, lists, strict=True):
            for values, value in samples(fields, received_at):
                if len(values) != arity:
                    raise ValueError(f"{name} takes labels {family.labels}, got {values!r}")
                extra = (
                    (family.extras.get(values) or extra_labels(family, values)) if values else ""
                )
                text = str(value) if type(value) is int else number(value)
                lines.append(f"{name}{{{labels}{extra}}} {text}\n")
    for family, lines in zip(_CONTAINER_FAMILIES, lists, strict=True):
        if lines:
            out.lines[family.name] = lines


def _container_labels(base: str, host: str | None, container_id: str | None) -> str:
    if host is None:
        return base
    return f'{base},host="{escape(host)}",container_id="{escape(container_id or "")}"'


def render_target(snapshot: TargetSnapshot) -> dict[str, str]:
    """All series of one target, as text per family name."""
    out = Lines()
    base = f'target="{escape(snapshot.name)}"'
    out.one(UP, base, 1 if snapshot.up else 0)
    support = snapshot.support
    if support is not None:
        _render_containers(out, base, support, snapshot.received_at)
        if support.api_status is not None:
            out.add(API_STATUS, base, states(API_STATUSES, support.api_status))
        if snapshot.health is not None:
            for gateway in snapshot.health.gateways:
                labels = _container_labels(base, gateway.host, gateway.container_id)
                out.add(GATEWAY_STATUS, labels, states(GATEWAY_STATES, gateway.status))
        if snapshot.shards_configured is not None:
            out.one(SHARDS_CONFIGURED, base, snapshot.shards_configured)
    if snapshot.labels:
        out.one(TARGET_INFO, _target_info_labels(base, snapshot.labels), 1)
    if snapshot.last_duration is not None:
        out.one(POLL_DURATION, base, snapshot.last_duration)
    if snapshot.last_success is not None:
        out.one(LAST_SUCCESS, base, snapshot.last_success)
    out.one(POLLS, base, snapshot.polls)
    out.add(POLL_ERRORS, base, [((r,), snapshot.errors.get(r, 0)) for r in ERROR_REASONS])
    if snapshot.with_logins:
        out.add(LOGINS, base, [((r,), snapshot.logins.get(r, 0)) for r in LOGIN_RESULTS])
    if snapshot.invalid_fields:
        invalid = sorted(snapshot.invalid_fields.items())
        out.add(INVALID_FIELDS, base, [((f,), n) for f, n in invalid])
    if snapshot.endpoints:
        endpoints = sorted(snapshot.endpoints.items())
        out.add(COLLECTOR_SUCCESS, base, [((c,), 1 if s.success else 0) for c, s in endpoints])
        out.add(
            COLLECTOR_ERRORS,
            base,
            [((c, r), s.errors.get(r, 0)) for c, s in endpoints for r in ERROR_REASONS],
        )
    return {family: "".join(lines) for family, lines in out.lines.items() if lines}


def _target_info_labels(base: str, labels: tuple[tuple[str, str], ...]) -> str:
    """The configured labels after ``target`` (names validated by the configuration)."""
    return base + "".join(f',{name}="{escape(value)}"' for name, value in labels)


def exporter_pieces(
    *,
    reload_ok: bool | None = None,
    reload_timestamp: float | None = None,
    shard: int | None = None,
    total_shards: int | None = None,
) -> dict[str, str]:
    """The exporter's own series, not tied to a target."""
    out = Lines()
    out.add(EXPORTER_BUILD_INFO, "", (((__version__,), 1),))
    if reload_ok is not None:
        out.one(CONFIG_RELOAD_SUCCESSFUL, "", 1 if reload_ok else 0)
    if reload_timestamp is not None:
        out.one(CONFIG_RELOAD_TIMESTAMP, "", reload_timestamp)
    if shard is not None and total_shards is not None:
        out.one(SHARD_ORDINAL, "", shard)
        out.one(TOTAL_SHARDS, "", total_shards)
    return {family: "".join(lines) for family, lines in out.lines.items()}
