"""The Build expiry, Storage and Connection rows: each On-Premises container's own state."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from .panels import (
    UNLIMITED_MAPPING,
    bar_panel,
    organize,
    query,
    series_panel,
    state_mappings,
    steps,
    table_panel,
    timeline_panel,
)
from .promql import (
    CONTAINER,
    DAY,
    LEGEND_CONTAINER,
    by,
    finite_free_space,
    sel,
    state_code,
)


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
