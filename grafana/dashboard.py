"""The Grafana dashboard, built with Grafana's own foundation SDK.

Regenerate the committed JSON after a change (a test fails while it is out of date)::

    python grafana/dashboard.py > grafana/whatsapp-support-exporter.json

One dashboard serves every deployment (a sidecar per Webapp, a central exporter, sharded
replicas): queries keep ``job, instance, target`` apart, so two sidecars that both name their
target "local" never merge, and totals over containers take ``max`` per container first, so two
HA sidecars exporting the same cluster never count it twice.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from grafana_foundation_sdk.builders import bargauge, common, prometheus, stat, statetimeline, table
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import timeseries as ts
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

UID = "whatsapp-support"
TITLE = "WhatsApp Business API (support)"
# The Grafana release the SDK's schema is generated for (see the pinned SDK version).
GRAFANA_VERSION = "11.6.0"
RUNBOOK = (
    "https://github.com/whatsapp-support-exporter/whatsapp-support-exporter/blob/main/"
    "docs/runbook.md"
)
# Meta documents 9223372036853727000 (about 2^63) for a filesystem without practical limit.
UNLIMITED = 9e18
# The exporter withdraws a target's data 3 x the poll interval (30 s) after its last success.
STALE_AFTER_SECONDS = 90
DAY = 86400

DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
TARGET = ("job", "instance", "target")
CONTAINER = (*TARGET, "host", "container_id")
EXPORTER = ("job", "instance")
ACCOUNT = ("job", "instance", "account")
NUMBER = (*ACCOUNT, "phone_number_id")
LEGEND_NUMBER = "{{account}} {{phone_number_id}} ({{instance}})"
LEGEND_CONTAINER = "{{target}} {{host}} {{container_id}} ({{instance}})"
LEGEND_TARGET = "{{target}} ({{instance}})"


# ---------------------------------------------------------------- PromQL


def sel(metric: str, extra: str = "") -> str:
    """A selector of a target's series, filtered by the job, instance and target variables."""
    return f'{metric}{{job=~"$job", instance=~"$instance", target=~"$target"{extra}}}'


def cloud_sel(metric: str, extra: str = "") -> str:
    """A selector of a Cloud API account's series, filtered by the job, instance and account."""
    return f'{metric}{{job=~"$job", instance=~"$instance", account=~"$account"{extra}}}'


def exporter_sel(metric: str) -> str:
    """A selector of an exporter's own series (they carry no target)."""
    return f'{metric}{{job=~"$job", instance=~"$instance"}}'


def by(labels: Sequence[str]) -> str:
    return f"by ({', '.join(labels)})"


def per_container(metric: str, extra: str = "") -> str:
    """One series per container, whoever exports it.

    A cluster container is known by its ``host`` and ``container_id`` (two HA sidecars export
    the same ones: ``max`` keeps one); a single instance has neither, so it is known by the
    exporter that polls it.
    """
    clustered = sel(metric, extra + ', host!=""')
    single = sel(metric, extra + ', host=""')
    cluster = f"max by (job, target, host, container_id) ({clustered})"
    single = f"max {by(TARGET)} ({single})"
    return f"({cluster} or {single})"


def state_code(
    metric: str,
    label: str,
    states: Sequence[str],
    keep: Sequence[str],
    select: Callable[[str, str], str] = sel,
) -> str:
    """A state set as one number per series: 1 for the first state, 2 for the next...

    0 means an undocumented state (every documented series is 0).
    """
    terms = [
        f"{i} * max {by(keep)} ({select(metric, f', {label}=' + json.dumps(state))})"
        for i, state in enumerate(states, start=1)
    ]
    return "\n+ ".join(terms)


def finite_free_space() -> str:
    """Free space of directories with a practical limit (the unlimited value left out)."""
    return f"{sel('whatsapp_free_space_bytes')} < {UNLIMITED:.0e}"


# ---------------------------------------------------------------- panel helpers


def query(
    expr: str,
    ref: str = "A",
    legend: str = "",
    *,
    instant: bool = False,
    table_format: bool = False,
) -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DS)
    if legend:
        q = q.legend_format(legend)
    if table_format:
        q = q.format(pm.PromQueryFormat.TABLE).instant()
    elif instant:
        q = q.instant()
    else:
        q = q.range()
    return q


def steps(*pairs: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=value, color=color) for value, color in pairs])
    )


def value_map(options: dict[str, tuple[str, str]]) -> dm.ValueMap:
    return dm.ValueMap(
        options={
            value: dm.ValueMappingResult(text=text, color=color, index=i)
            for i, (value, (text, color)) in enumerate(options.items())
        }
    )


def state_mappings(states: Sequence[tuple[str, str]]) -> list[dm.ValueMapping]:
    """Mappings for :func:`state_code`: 1..n to the states, 0 to "undocumented"."""
    options = {str(i): state for i, state in enumerate(states, start=1)}
    options["0"] = ("undocumented", "purple")
    return [value_map(options)]


UNLIMITED_MAPPING = dm.RangeMap(
    options=dm.DashboardRangeMapOptions(
        from_val=UNLIMITED, to=1e300, result=dm.ValueMappingResult(text="unlimited", color="green")
    )
)
OK_FAILED: list[dm.ValueMapping] = [value_map({"1": ("ok", "green"), "0": ("failed", "red")})]


def override(name: str, **properties: Any) -> dash.DashboardFieldConfigSourceOverrides:
    return (
        dash.DashboardFieldConfigSourceOverrides()
        .matcher(dm.MatcherConfig(id_val="byName", options=name))
        .properties([dm.DynamicConfigValue(id_val=k, value=v) for k, v in properties.items()])
    )


def organize(
    rename: dict[str, str],
    exclude: Sequence[str] = (),
    order: Sequence[str] = (),
    hidden: Sequence[str] = ("job", "container_id"),
    sort: tuple[str, bool] | None = None,
) -> list[dm.DataTransformerConfig]:
    """Grafana's merge + organize: one row per label set, query values as named columns.

    ``job`` and ``container_id`` are hidden by default (``instance`` and ``host`` tell rows
    apart). ``sort`` is a column and whether it sorts descending: what matters comes first.
    """
    exclude = ("Time", *hidden, *exclude)
    sorting = (
        [
            dm.DataTransformerConfig(
                id_val="sortBy", options={"sort": [{"field": sort[0], "desc": sort[1]}]}
            )
        ]
        if sort
        else []
    )
    return [
        dm.DataTransformerConfig(id_val="merge", options={}),
        dm.DataTransformerConfig(
            id_val="organize",
            options={
                "excludeByName": dict.fromkeys(exclude, True),
                "renameByName": rename,
                "indexByName": {name: i for i, name in enumerate(order)},
            },
        ),
        *sorting,
    ]


def stat_panel(title: str, description: str, unit: str) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .span(4)
        .height(4)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def bar_panel(title: str, description: str, unit: str, w: int, h: int) -> bargauge.Panel:
    return (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .span(w)
        .height(h)
        .orientation(cm.VizOrientation.HORIZONTAL)
        .display_mode(cm.BarGaugeDisplayMode.BASIC)
        .sizing(cm.BarGaugeSizing.MANUAL)
        .min_viz_height(16)
        .max_viz_height(24)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def table_panel(title: str, description: str, unit: str, w: int, h: int) -> table.Panel:
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .span(w)
        .height(h)
    )


def series_panel(title: str, description: str, unit: str, w: int, h: int) -> ts.Panel:
    return (
        ts.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .span(w)
        .height(h)
        .fill_opacity(10)
        .legend(
            common.VizLegendOptions()
            .show_legend(True)
            .display_mode(cm.LegendDisplayMode.LIST)
            .placement(cm.LegendPlacement.BOTTOM)
        )
    )


def timeline_panel(
    title: str, description: str, mappings: list[dm.ValueMapping], w: int, h: int
) -> statetimeline.Panel:
    return (
        statetimeline.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .mappings(mappings)
        .span(w)
        .height(h)
        .show_value(cm.VisibilityMode.NEVER)
        .merge_values(True)
        .color_scheme(dash.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .legend(common.VizLegendOptions().show_legend(True).placement(cm.LegendPlacement.BOTTOM))
    )


# ---------------------------------------------------------------- rows


def overview() -> list[cogbuilder.Builder[dm.Panel]]:
    up = sel("whatsapp_up")
    return [
        stat_panel(
            "Targets up",
            "Targets whose last poll of /v1/support worked, of all targets. A target is counted "
            "once per exporter that polls it.",
            "none",
        )
        .with_target(query(f"count({up} == 1) or vector(0)", "A", "up", instant=True))
        .with_target(query(f"count({up})", "B", "all", instant=True))
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .thresholds(steps((None, "blue"))),
        stat_panel(
            "Targets down",
            "Targets whose last poll failed: the exporter cannot read them (see Poll errors by "
            "reason). This is not WhatsApp's health; that is the socket.",
            "none",
        )
        .with_target(query(f"count({up} == 0) or vector(0)", instant=True))
        .thresholds(steps((None, "green"), (1, "red"))),
        stat_panel(
            "Sockets connected",
            "Containers whose socket to the WhatsApp server is UP, of all containers. A cluster "
            "container exported by two sidecars counts once.",
            "none",
        )
        .with_target(
            query(
                f"count({per_container('whatsapp_socket_connected')} == 1) or vector(0)",
                "A",
                "connected",
                instant=True,
            )
        )
        .with_target(
            query(f"count({per_container('whatsapp_socket_connected')})", "B", "all", instant=True)
        )
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .thresholds(steps((None, "blue"))),
        stat_panel(
            "Nearest build expiry",
            "Time until the first container's build expires; after that the WhatsApp client "
            "stops working (error 1005 App Expired). Upgrade before it.",
            "s",
        )
        .with_target(
            query(f"min({sel('whatsapp_build_expiry_timestamp_seconds')}) - time()", instant=True)
        )
        .thresholds(steps((None, "red"), (7 * DAY, "orange"), (30 * DAY, "green"))),
        stat_panel(
            "Least free space",
            "The smallest free space of any directory of any container. A filesystem without "
            "practical limit reports about 2^63 bytes, shown as unlimited.",
            "bytes",
        )
        .with_target(query(f"min({sel('whatsapp_free_space_bytes')})", instant=True))
        .mappings([UNLIMITED_MAPPING])
        .thresholds(steps((None, "red"), (1e9, "orange"), (10e9, "green"))),
        stat_panel(
            "Numbers not registered",
            "Containers whose debug_info says unregistered: the phone number is not registered, "
            "no message can be sent. A cluster container exported twice counts once.",
            "none",
        )
        .with_target(
            query(f"count({per_container('whatsapp_registered')} == 0) or vector(0)", instant=True)
        )
        .thresholds(steps((None, "green"), (1, "red"))),
    ]


def build_expiry() -> list[cogbuilder.Builder[dm.Panel]]:
    expiry = sel("whatsapp_build_expiry_timestamp_seconds")
    return [
        bar_panel(
            "Time until build expiry per container",
            "Time left before each container's build expires (expire_timestamp). Red under a "
            "week, orange under 30 days.",
            "s",
            12,
            8,
        )
        .with_target(
            query(
                f"sort(max {by(CONTAINER)} ({expiry}) - time())",
                legend=LEGEND_CONTAINER,
                instant=True,
            )
        )
        .thresholds(steps((None, "red"), (7 * DAY, "orange"), (30 * DAY, "green"))),
        table_panel(
            "Build expiry dates",
            "When each container's build expires, and its version. Containers of one cluster "
            "should run the same build.",
            "none",
            12,
            8,
        )
        .with_target(query(f"max {by(CONTAINER)} ({expiry}) * 1000", "A", table_format=True))
        .with_target(
            query(
                f"max {by((*CONTAINER, 'version'))} ({sel('whatsapp_build_info')})",
                "B",
                table_format=True,
            )
        )
        .transformations(
            organize(
                {"Value #A": "expires", "version": "version"},
                exclude=("Value #B",),
                order=("target", "host", "instance", "version", "expires"),
                sort=("expires", False),
            )
        )
        .with_override(
            dm.MatcherConfig(id_val="byName", options="expires"),
            [dm.DynamicConfigValue(id_val="unit", value="dateTimeAsIso")],
        ),
    ]


def storage() -> list[cogbuilder.Builder[dm.Panel]]:
    free = sel("whatsapp_free_space_bytes")
    keep = (*CONTAINER, "directory")
    return [
        table_panel(
            "Free space now",
            "Free space per directory and container. A filesystem without practical limit "
            "reports about 2^63 bytes: shown as unlimited.",
            "bytes",
            10,
            9,
        )
        .with_target(query(f"max {by(keep)} ({free})", table_format=True))
        .mappings([UNLIMITED_MAPPING])
        .transformations(
            organize(
                {"Value": "free"},
                order=("target", "host", "directory", "instance", "free"),
                sort=("free", False),
            )
        ),
        series_panel(
            "Free space per directory",
            "Free space over time. Directories without practical limit (unlimited) are left "
            "out so they do not flatten the others; they are listed in Free space now.",
            "bytes",
            14,
            9,
        )
        .with_target(
            query(
                f"max {by(keep)} ({finite_free_space()})",
                legend="{{target}} {{host}} {{directory}} ({{instance}})",
            )
        )
        .mappings([UNLIMITED_MAPPING]),
        bar_panel(
            "Estimated time until full",
            "At the rate of the last 6 hours, when each draining directory fills up. Only "
            "directories that drain are listed; unlimited ones are left out.",
            "s",
            12,
            8,
        )
        .with_target(
            query(
                f"sort(({finite_free_space()}) / (-deriv({free}[6h]) > 0))",
                legend="{{target}} {{host}} {{directory}} ({{instance}})",
                instant=True,
            )
        )
        .thresholds(steps((None, "red"), (DAY, "orange"), (7 * DAY, "green"))),
        bar_panel(
            "Free space in 24 h (forecast)",
            "Free space expected in 24 hours, extrapolated linearly from the last 6 hours "
            "(predict_linear). Unlimited directories are not forecast.",
            "bytes",
            12,
            8,
        )
        .with_target(
            query(
                f"sort(clamp_min(predict_linear({free}[6h], {DAY}), 0) and {finite_free_space()})",
                legend="{{target}} {{host}} {{directory}} ({{instance}})",
                instant=True,
            )
        )
        .thresholds(steps((None, "red"), (1e9, "orange"), (10e9, "green"))),
    ]


SOCKET_STATES = (
    ("UP", "green"),
    ("UP receiving offline", "yellow"),
    ("SC", "orange"),
    ("DN", "red"),
    ("UNK", "purple"),
)
GATEWAY_STATES = (
    ("connected", "green"),
    ("connecting", "yellow"),
    ("disconnected", "text"),
    ("uninitialized", "orange"),
    ("unregistered", "red"),
)
ROLES = (("primary_master", "blue"), ("secondary_master", "purple"), ("coreapp", "green"))
API_STATUSES = (("stable", "green"), ("experimental", "yellow"), ("deprecated", "red"))


# device_iso8601 has a resolution of one second: a window average, and thresholds past that noise
SKEW_WINDOW = "5m"
SKEW_WARNING_SECONDS = 2
SKEW_ALERT_SECONDS = 60  # WhatsAppClockSkew


def connection() -> list[cogbuilder.Builder[dm.Panel]]:
    return [
        timeline_panel(
            "Socket state",
            "Connection of each container to the WhatsApp server (socket_conn): UP connected, "
            "UP receiving offline catching up, SC connecting, DN disconnected, UNK unknown.",
            state_mappings(SOCKET_STATES),
            16,
            8,
        ).with_target(
            query(
                state_code(
                    "whatsapp_socket_state", "state", [s for s, _ in SOCKET_STATES], CONTAINER
                ),
                legend=LEGEND_CONTAINER,
            )
        ),
        series_panel(
            "Clock skew (5 min average)",
            "The container's clock (device_iso8601) minus the exporter's, averaged over 5 "
            "minutes: device_iso8601 has whole seconds, so one reading of a synchronized clock "
            "jumps between 0 and -1 s and its average sits near -0.5 s. Outside the orange "
            f"lines (±{SKEW_WARNING_SECONDS} s) the clock drifts: check the host's time "
            f"synchronization; past ±{SKEW_ALERT_SECONDS} s WhatsAppClockSkew fires (TLS and "
            "message timestamps break).",
            "s",
            8,
            8,
        )
        .with_target(
            query(
                f"max {by(CONTAINER)} "
                f"(avg_over_time({sel('whatsapp_clock_skew_seconds')}[{SKEW_WINDOW}]))",
                legend=LEGEND_CONTAINER,
            )
        )
        .decimals(1)
        .axis_soft_min(-2 * SKEW_WARNING_SECONDS)
        .axis_soft_max(2 * SKEW_WARNING_SECONDS)
        .thresholds(
            steps(
                (None, "red"),
                (-SKEW_ALERT_SECONDS, "orange"),
                (-SKEW_WARNING_SECONDS, "green"),
                (SKEW_WARNING_SECONDS, "orange"),
                (SKEW_ALERT_SECONDS, "red"),
            )
        )
        .thresholds_style(
            common.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE)
        ),
    ]


def _zero_if_none(expr: str) -> str:
    """Count that shows 0 for a cluster where nothing matched (and nothing for others)."""
    configured = f"max {by(TARGET)} ({sel('whatsapp_shards_configured')})"
    return f"({expr}) or (0 * {configured})"


def cluster() -> list[cogbuilder.Builder[dm.Panel]]:
    owned_shard = sel("whatsapp_shard_owned", ', shard=~"[0-9]+"')
    connected = sel("whatsapp_gateway_status", ', state="connected"')
    configured = f"max {by(TARGET)} ({sel('whatsapp_shards_configured')})"
    owned = _zero_if_none(f"count {by(TARGET)} (max {by((*TARGET, 'shard'))} ({owned_shard}) == 1)")
    on_connected = _zero_if_none(
        f"count {by(TARGET)} (max {by((*TARGET, 'shard'))} (({owned_shard} == 1) "
        f"and on ({', '.join(CONTAINER)}) ({connected} == 1)))"
    )
    return [
        table_panel(
            "Shards per cluster",
            "Per multiconnect cluster: shards configured (/v1/account/shards), shards 0..N-1 "
            "owned by a Coreapp, and owned by a Coreapp whose gateway is connected. Missing is "
            "configured minus connected: messages of those shards are not delivered.",
            "none",
            10,
            7,
        )
        .with_target(query(configured, "A", table_format=True))
        .with_target(query(owned, "B", table_format=True))
        .with_target(query(on_connected, "C", table_format=True))
        .with_target(query(f"{configured} - ({on_connected})", "D", table_format=True))
        .transformations(
            organize(
                {
                    "Value #A": "configured",
                    "Value #B": "owned",
                    "Value #C": "connected",
                    "Value #D": "missing",
                },
                order=("target", "instance", "configured", "owned", "connected", "missing"),
                sort=("missing", True),
            )
        )
        .with_override(
            dm.MatcherConfig(id_val="byName", options="missing"),
            [
                dm.DynamicConfigValue(
                    id_val="thresholds",
                    value=steps((None, "green"), (1, "red")).build(),
                ),
                dm.DynamicConfigValue(
                    id_val="custom.cellOptions", value={"type": "color-background"}
                ),
            ],
        ),
        timeline_panel(
            "API status",
            "meta.api_status of each target's /v1/support answer: deprecated means the build's "
            "API is going away.",
            state_mappings(API_STATUSES),
            14,
            7,
        ).with_target(
            query(
                state_code("whatsapp_api_status", "status", [s for s, _ in API_STATUSES], TARGET),
                legend=LEGEND_TARGET,
            )
        ),
        timeline_panel(
            "Role per container",
            "Role of each container: exactly one primary master per cluster is healthy.",
            state_mappings(ROLES),
            12,
            9,
        ).with_target(
            query(
                state_code("whatsapp_role", "role", [s for s, _ in ROLES], CONTAINER),
                legend=LEGEND_CONTAINER,
            )
        ),
        timeline_panel(
            "Gateway status per container",
            "gateway_status of each container (/v1/health). Only a container that owns a shard "
            "needs to be connected; disconnected elsewhere is normal.",
            state_mappings(GATEWAY_STATES),
            12,
            9,
        ).with_target(
            query(
                state_code(
                    "whatsapp_gateway_status", "state", [s for s, _ in GATEWAY_STATES], CONTAINER
                ),
                legend=LEGEND_CONTAINER,
            )
        ),
        bar_panel(
            "Shard ownership",
            "Containers owning each shard of each cluster (-1 is the control shard): exactly "
            "one is healthy, two is a split brain.",
            "none",
            8,
            9,
        )
        .with_target(
            query(
                f"count {by((*TARGET, 'shard'))} ({sel('whatsapp_shard_owned')} == 1)",
                legend="{{target}} shard {{shard}} ({{instance}})",
                instant=True,
            )
        )
        .thresholds(steps((None, "green"), (2, "red"))),
        table_panel(
            "Shard owners",
            "Which container owns which shard.",
            "none",
            6,
            9,
        )
        .with_target(
            query(
                f"max {by((*CONTAINER, 'shard'))} ({sel('whatsapp_shard_owned')}) == 1",
                table_format=True,
            )
        )
        .transformations(
            organize({}, exclude=("Value",), order=("target", "shard", "host", "instance"))
        ),
        table_panel(
            "Schema versions across containers",
            "Database schema version of each table: versions above 1 means the containers of a "
            "cluster disagree (an upgrade did not finish).",
            "none",
            10,
            9,
        )
        .with_target(
            query(
                f"count {by((*TARGET, 'table'))} (count_values {by((*TARGET, 'table'))} "
                f'("schema_version", {sel("whatsapp_schema_version")}))',
                "A",
                table_format=True,
            )
        )
        .with_target(
            query(
                f"max {by((*TARGET, 'table'))} ({sel('whatsapp_schema_version')})",
                "B",
                table_format=True,
            )
        )
        .with_target(
            query(
                f"min {by((*TARGET, 'table'))} ({sel('whatsapp_schema_version')})",
                "C",
                table_format=True,
            )
        )
        .transformations(
            organize(
                {"Value #A": "versions", "Value #B": "highest", "Value #C": "lowest"},
                order=("target", "table", "instance", "versions", "highest", "lowest"),
                sort=("versions", True),
            )
        )
        .with_override(
            dm.MatcherConfig(id_val="byName", options="versions"),
            [
                dm.DynamicConfigValue(
                    id_val="thresholds", value=steps((None, "green"), (2, "red")).build()
                ),
                dm.DynamicConfigValue(
                    id_val="custom.cellOptions", value={"type": "color-background"}
                ),
            ],
        ),
    ]


def fleet() -> list[cogbuilder.Builder[dm.Panel]]:
    reload_ok = exporter_sel("whatsapp_exporter_config_last_reload_successful")
    targets = f"count {by(EXPORTER)} ({sel('whatsapp_up')})"
    ordinal = exporter_sel("whatsapp_exporter_shard_ordinal")
    shard = f'count_values {by(EXPORTER)} ("shard", {ordinal})'
    return [
        table_panel(
            "Exporter replicas",
            "Each exporter process: its version, the shard it polls of how many, its targets, "
            "and whether its configuration last loaded.",
            "none",
            12,
            7,
        )
        .with_target(
            query(
                f"max {by((*EXPORTER, 'version'))} "
                f"({exporter_sel('whatsapp_exporter_build_info')})",
                "A",
                table_format=True,
            )
        )
        .with_target(
            query(
                f"max {by(EXPORTER)} ({exporter_sel('whatsapp_exporter_shard_ordinal')})",
                "B",
                table_format=True,
            )
        )
        .with_target(
            query(
                f"max {by(EXPORTER)} ({exporter_sel('whatsapp_exporter_total_shards')})",
                "C",
                table_format=True,
            )
        )
        .with_target(query(targets, "D", table_format=True))
        .with_target(query(f"max {by(EXPORTER)} ({reload_ok})", "E", table_format=True))
        .transformations(
            organize(
                {
                    "Value #B": "shard",
                    "Value #C": "of shards",
                    "Value #D": "targets",
                    "Value #E": "config",
                },
                exclude=("Value #A",),
                hidden=(),
                order=("job", "instance", "version", "shard", "of shards", "targets", "config"),
            )
        )
        .with_override(
            dm.MatcherConfig(id_val="byName", options="config"),
            [
                dm.DynamicConfigValue(id_val="mappings", value=OK_FAILED),
                dm.DynamicConfigValue(
                    id_val="custom.cellOptions", value={"type": "color-background"}
                ),
            ],
        ),
        bar_panel(
            "Targets per shard",
            "Target names each shard of the fleet polls (--shard of --total-shards; targets are "
            "assigned by name). A target polled by two replicas of one shard counts once.",
            "none",
            6,
            7,
        )
        .with_target(
            query(
                f"count by (job, shard) (max by (job, shard, target) "
                f"({sel('whatsapp_up')} * on (job, instance) group_left (shard) {shard}))",
                legend="{{job}} shard {{shard}}",
                instant=True,
            )
        )
        .thresholds(steps((None, "blue"))),
        timeline_panel(
            "Config reload status",
            "Whether each exporter's last load or reload of its configuration worked. A failed "
            "reload keeps the running configuration.",
            OK_FAILED,
            6,
            7,
        ).with_target(query(f"max {by(EXPORTER)} ({reload_ok})", legend="{{instance}}")),
    ]


def exporter_health() -> list[cogbuilder.Builder[dm.Panel]]:
    def rate(metric: str, keep: Sequence[str]) -> str:
        return f"sum {by(keep)} (rate({sel(metric)}[$__rate_interval]))"

    polls = rate("whatsapp_exporter_polls_total", TARGET)
    return [
        series_panel(
            "Poll duration",
            "How long the last poll of each target took (login, /v1/support and the optional "
            "endpoints). Near the poll timeout means the upstream is struggling.",
            "s",
            8,
            8,
        ).with_target(
            query(
                f"max {by(TARGET)} ({sel('whatsapp_exporter_poll_duration_seconds')})",
                legend=LEGEND_TARGET,
            )
        ),
        series_panel(
            "Poll errors by reason",
            "Failed polls per second by reason (timeout, connect, tls, auth, rate_limited, "
            "unavailable, http, invalid_response), beside all polls per second.",
            "reqps",
            8,
            8,
        )
        .with_target(
            query(
                rate("whatsapp_exporter_poll_errors_total", (*TARGET, "reason")),
                "A",
                "{{target}} {{reason}} ({{instance}})",
            )
        )
        .with_target(query(polls, "B", "{{target}} all polls ({{instance}})")),
        series_panel(
            "Data age",
            "Time since each target last answered well. At the red line (the exporter's default "
            "stale-after, 3 polls of 30 s) its data series are withdrawn.",
            "s",
            8,
            8,
        )
        .with_target(
            query(
                f"time() - max {by(TARGET)} "
                f"({sel('whatsapp_exporter_last_success_timestamp_seconds')})",
                legend=LEGEND_TARGET,
            )
        )
        .thresholds(steps((None, "green"), (STALE_AFTER_SECONDS, "red")))
        .thresholds_style(
            common.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE)
        ),
        series_panel(
            "Logins by result",
            "Logins per second (POST /v1/users/login): a login happens once per token lifetime; "
            "failures mean the credentials were rejected.",
            "reqps",
            6,
            7,
        ).with_target(
            query(
                rate("whatsapp_exporter_logins_total", (*TARGET, "result")),
                legend="{{target}} {{result}} ({{instance}})",
            )
        ),
        series_panel(
            "Invalid upstream fields",
            "Upstream fields dropped per second for a wrong type (the rest of the target is "
            "still exported). 0 is healthy.",
            "reqps",
            6,
            7,
        ).with_target(
            query(
                f"{rate('whatsapp_exporter_invalid_fields_total', (*TARGET, 'field'))} "
                f"or (0 * {polls})",
                legend="{{target}} {{field}} ({{instance}})",
            )
        ),
        timeline_panel(
            "Optional endpoints",
            "Whether the last request of /v1/health and /v1/account/shards worked. A failure "
            "there does not fail the poll of /v1/support.",
            OK_FAILED,
            6,
            7,
        ).with_target(
            query(
                f"max {by((*TARGET, 'collector'))} ({sel('whatsapp_exporter_collector_success')})",
                legend="{{target}} {{collector}} ({{instance}})",
            )
        ),
        series_panel(
            "Optional endpoint errors",
            "Failed requests per second of /v1/health and /v1/account/shards, by reason.",
            "reqps",
            6,
            7,
        ).with_target(
            query(
                rate("whatsapp_exporter_collector_errors_total", (*TARGET, "collector", "reason"))
                + f" or (0 * {polls})",
                legend="{{target}} {{collector}} {{reason}} ({{instance}})",
            )
        ),
    ]


# The Cloud API's state sets, in the order of their codes (see state_code), with their colours.
CAN_SEND = (("AVAILABLE", "green"), ("LIMITED", "orange"), ("BLOCKED", "red"))
QUALITIES = (
    ("GREEN", "green"),
    ("YELLOW", "yellow"),
    ("RED", "red"),
    ("NA", "text"),
    ("UNKNOWN", "purple"),
)
NUMBER_STATUSES = (
    ("CONNECTED", "green"),
    ("PENDING", "blue"),
    ("UNVERIFIED", "blue"),
    ("RATE_LIMITED", "yellow"),
    ("FLAGGED", "orange"),
    ("RESTRICTED", "orange"),
    ("DISCONNECTED", "red"),
    ("BANNED", "red"),
    ("MIGRATED", "text"),
    ("DELETED", "text"),
    ("UNKNOWN", "purple"),
)
PLATFORMS = (("CLOUD_API", "green"), ("ON_PREMISE", "red"), ("NOT_APPLICABLE", "text"))
# Above the highest tier (100K): only TIER_UNLIMITED, exported as +Inf.
UNLIMITED_TIER = dm.RangeMap(
    options=dm.DashboardRangeMapOptions(
        from_val=1e9, result=dm.ValueMappingResult(text="unlimited", color="green")
    )
)


def numbers_by(metric: str, label: str) -> str:
    """Phone numbers per state of a state set, each number once whoever reports it.

    A number is known by its phone_number_id, Meta's id for it everywhere: counting after a
    ``max`` by it counts a number once even while two exporters (or jobs) report it.
    """
    return f"sum by ({label}) (max by (phone_number_id, {label}) ({cloud_sel(metric)}))"


def colour_by_name(
    states: Sequence[tuple[str, str]],
) -> list[dash.DashboardFieldConfigSourceOverrides]:
    return [
        override(name, color={"mode": "fixed", "fixedColor": colour}) for name, colour in states
    ]


def cloud_api() -> list[cogbuilder.Builder[dm.Panel]]:
    up = cloud_sel("whatsapp_cloud_up")
    limit = cloud_sel("whatsapp_cloud_phone_number_messaging_limit")

    def code(metric: str, label: str, states: Sequence[tuple[str, str]]) -> str:
        return state_code(metric, label, [s for s, _ in states], NUMBER, cloud_sel)

    def column(
        name: str, states: Sequence[tuple[str, str]]
    ) -> dash.DashboardFieldConfigSourceOverrides:
        return override(
            name,
            mappings=[m.to_json() for m in state_mappings(states)],
            **{"custom.cellOptions": {"type": "color-text"}},
        )

    return [
        stat_panel(
            "Cloud API accounts up",
            "WhatsApp Business Accounts whose last poll of the Graph API worked, of all accounts. "
            "An account is counted once per exporter that polls it.",
            "none",
        )
        .with_target(query(f"count({up} == 1) or vector(0)", "A", "up", instant=True))
        .with_target(query(f"count({up})", "B", "all", instant=True))
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .span(4)
        .height(8)
        .thresholds(steps((None, "blue"))),
        bar_panel(
            "Numbers by quality rating",
            "Phone numbers per quality_rating (GREEN high, YELLOW medium, RED low; NA not yet "
            "rated). A RED number risks being flagged and a lower messaging limit.",
            "none",
            6,
            8,
        )
        .with_target(
            query(
                numbers_by("whatsapp_cloud_phone_number_quality", "quality"),
                legend="{{quality}}",
                instant=True,
            )
        )
        .overrides(colour_by_name(QUALITIES)),
        bar_panel(
            "Numbers by status",
            "Phone numbers per status (statuses no number has are left out). A number must be "
            "CONNECTED to send and receive; FLAGGED, RESTRICTED, BANNED... say why not.",
            "none",
            7,
            8,
        )
        .with_target(
            query(
                f"{numbers_by('whatsapp_cloud_phone_number_status', 'status')} > 0",
                legend="{{status}}",
                instant=True,
            )
        )
        .overrides(colour_by_name(NUMBER_STATUSES)),
        bar_panel(
            "Numbers by messaging limit",
            "Phone numbers per messaging limit: business-initiated conversations per 24 hours "
            "(the portfolio's limit where Meta reports one, else the number's tier). A number "
            "UNTIERED or of an unknown tier has none.",
            "none",
            7,
            8,
        )
        .with_target(
            query(
                'label_replace(count_values("limit", max by (phone_number_id) '
                f'({limit})), "limit", "unlimited", "limit", "[+]Inf")',
                legend="{{limit}} / 24 h",
                instant=True,
            )
        )
        .thresholds(steps((None, "blue"))),
        timeline_panel(
            "Can send per number",
            "health_status.can_send_message of each phone number: AVAILABLE, LIMITED (some "
            "messages refused, e.g. a display name not approved yet), BLOCKED (none leaves).",
            state_mappings(CAN_SEND),
            12,
            9,
        ).with_target(
            query(
                code("whatsapp_cloud_phone_number_can_send_message", "status", CAN_SEND),
                legend=LEGEND_NUMBER,
            )
        ),
        series_panel(
            "Graph API usage per account",
            "Share of the Graph API rate limit used, from the X-Business-Use-Case-Usage header "
            "(call count, CPU time, total time). At 90 % the exporter waits; at 100 % Meta "
            "refuses the app's calls on the account.",
            "percentunit",
            12,
            9,
        )
        .with_target(
            query(
                f"max {by((*ACCOUNT, 'kind'))} ({cloud_sel('whatsapp_cloud_api_usage_ratio')})",
                legend="{{account}} {{kind}} ({{instance}})",
            )
        )
        .min(0)
        .max(1)
        .thresholds(steps((None, "green"), (0.9, "red")))
        .thresholds_style(
            common.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE)
        ),
        series_panel(
            "Numbers by platform (migration)",
            "Phone numbers per platform over time: ON_PREMISE numbers are on the On-Premises "
            "API, switched off in October 2025 (their messages are no longer delivered); the "
            "line falls to 0 as they move to CLOUD_API.",
            "none",
            12,
            8,
        )
        .with_target(
            query(
                numbers_by("whatsapp_cloud_phone_number_platform", "platform"),
                legend="{{platform}}",
            )
        )
        .overrides(colour_by_name(PLATFORMS)),
        timeline_panel(
            "Quality rating per number",
            "quality_rating of each phone number over time: GREEN high, YELLOW medium, RED low, "
            "NA not rated yet.",
            state_mappings(QUALITIES),
            12,
            8,
        ).with_target(
            query(
                code("whatsapp_cloud_phone_number_quality", "quality", QUALITIES),
                legend=LEGEND_NUMBER,
            )
        ),
        timeline_panel(
            "Status per number",
            "status of each phone number over time: only CONNECTED sends and receives.",
            state_mappings(NUMBER_STATUSES),
            12,
            9,
        ).with_target(
            query(
                code("whatsapp_cloud_phone_number_status", "status", NUMBER_STATUSES),
                legend=LEGEND_NUMBER,
            )
        ),
        series_panel(
            "Cloud API poll errors by reason",
            "Failed polls of each account per second by reason (auth: the token is rejected; "
            "rate_limited: Meta refused the calls), beside all polls per second.",
            "reqps",
            12,
            9,
        )
        .with_target(
            query(
                f"sum {by((*ACCOUNT, 'reason'))} (rate("
                f"{cloud_sel('whatsapp_exporter_cloud_poll_errors_total')}[$__rate_interval]))",
                "A",
                "{{account}} {{reason}} ({{instance}})",
            )
        )
        .with_target(
            query(
                f"sum {by(ACCOUNT)} (rate("
                f"{cloud_sel('whatsapp_exporter_cloud_polls_total')}[$__rate_interval]))",
                "B",
                "{{account}} all polls ({{instance}})",
            )
        ),
        table_panel(
            "Phone numbers",
            "Every phone number with its display number and verified name, platform, status, "
            "health, quality rating and messaging limit (conversations per 24 hours).",
            "none",
            24,
            9,
        )
        .with_target(
            query(
                f"max {by((*NUMBER, 'display_phone_number', 'verified_name'))} "
                f"({cloud_sel('whatsapp_cloud_phone_number_info')})",
                "A",
                table_format=True,
            )
        )
        .with_target(
            query(
                code("whatsapp_cloud_phone_number_platform", "platform", PLATFORMS),
                "B",
                table_format=True,
            )
        )
        .with_target(
            query(
                code("whatsapp_cloud_phone_number_status", "status", NUMBER_STATUSES),
                "C",
                table_format=True,
            )
        )
        .with_target(
            query(
                code("whatsapp_cloud_phone_number_can_send_message", "status", CAN_SEND),
                "D",
                table_format=True,
            )
        )
        .with_target(
            query(
                code("whatsapp_cloud_phone_number_quality", "quality", QUALITIES),
                "E",
                table_format=True,
            )
        )
        .with_target(query(f"max {by(NUMBER)} ({limit})", "F", table_format=True))
        .transformations(
            organize(
                {
                    "display_phone_number": "number",
                    "verified_name": "name",
                    "Value #B": "platform",
                    "Value #C": "status",
                    "Value #D": "can send",
                    "Value #E": "quality",
                    "Value #F": "limit",
                },
                exclude=("Value #A",),
                order=(
                    "account",
                    "number",
                    "name",
                    "phone_number_id",
                    "instance",
                    "platform",
                    "status",
                    "can send",
                    "quality",
                    "limit",
                ),
                sort=("status", True),
            )
        )
        .overrides(
            [
                column("platform", PLATFORMS),
                column("status", NUMBER_STATUSES),
                column("can send", CAN_SEND),
                column("quality", QUALITIES),
                override("limit", mappings=[UNLIMITED_TIER.to_json()]),
            ]
        ),
    ]


# ---------------------------------------------------------------- dashboard


def label_variable(name: str, label: str, definition: str, description: str) -> dash.QueryVariable:
    return (
        dash.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(DS)
        .query({"query": definition, "refId": f"{name}-variable", "qryType": 1})
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )


PANEL_NAMES = {
    "bargauge": "Bar gauge",
    "stat": "Stat",
    "state-timeline": "State timeline",
    "table": "Table",
    "timeseries": "Time series",
}
ROWS = (
    ("Overview", overview),
    ("Cloud API", cloud_api),
    ("Build expiry", build_expiry),
    ("Storage", storage),
    ("Connection", connection),
    ("Cluster", cluster),
    ("Exporter fleet", fleet),
    ("Exporter", exporter_health),
)


def build() -> dict[str, Any]:
    """The dashboard as Grafana imports it (with ``__inputs`` and ``__requires``)."""
    board = (
        dash.Dashboard(TITLE)
        .uid(UID)
        .description(
            "WhatsApp Business API On-Premises clients as seen by whatsapp-support-exporter "
            "(GET /v1/support, /v1/health, /v1/account/shards): build expiry, free space, "
            "socket and gateway, cluster shards and roles, and the exporters themselves; and "
            "the Cloud API's accounts and phone numbers (Graph API): quality, status, "
            "messaging limit, health, rate limit usage, and the migration off On-Premises."
        )
        .tags(["whatsapp", "whatsapp-support-exporter"])
        .readonly()
        .timezone("utc")
        .time("now-6h", "now")
        .refresh("1m")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .link(
            dash.DashboardLink("Runbook")
            .type(dm.DashboardLinkType.LINK)
            .icon("doc")
            .url(RUNBOOK)
            .target_blank(True)
        )
        .annotation(
            dash.AnnotationQuery()
            .name("Annotations & Alerts")
            .datasource(dm.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
            .built_in(1)
            .enable(True)
            .hide(True)
            .icon_color("rgba(0, 211, 255, 1)")
            .type("dashboard")
        )
        .with_variable(
            dash.DatasourceVariable("datasource")
            .label("Data source")
            .type("prometheus")
            .description("The Prometheus that scrapes the exporters.")
        )
        .with_variable(
            label_variable(
                "job",
                "Job",
                "label_values(whatsapp_exporter_build_info, job)",
                "Prometheus jobs scraping an exporter (sidecars, central, sharded).",
            )
        )
        .with_variable(
            label_variable(
                "instance",
                "Instance",
                'label_values(whatsapp_exporter_build_info{job=~"$job"}, instance)',
                "Exporter processes: one per sidecar or replica.",
            )
        )
        .with_variable(
            label_variable(
                "target",
                "Target",
                'label_values(whatsapp_up{job=~"$job", instance=~"$instance"}, target)',
                "WhatsApp clients by their configured name (two sidecars may both say local).",
            )
        )
        .with_variable(
            label_variable(
                "account",
                "Cloud API account",
                'label_values(whatsapp_cloud_up{job=~"$job", instance=~"$instance"}, account)',
                "WhatsApp Business Accounts on the Cloud API by their configured name.",
            )
        )
    )
    for title, panels in ROWS:
        board = board.with_row(dash.Row(title))
        for panel in panels():
            board = board.with_panel(panel)
    built: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    for number, panel in enumerate(built["panels"], start=1):
        panel["id"] = number
    panel_types = sorted({p["type"] for p in built["panels"]} - {"row"})
    return {
        # The data source is the `datasource` variable, so an import asks for no input.
        "__inputs": [],
        "__elements": {},
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": GRAFANA_VERSION},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
            *(
                {"type": "panel", "id": t, "name": PANEL_NAMES[t], "version": ""}
                for t in panel_types
            ),
        ],
        "id": None,
        **built,
    }


def main() -> None:
    json.dump(build(), sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
