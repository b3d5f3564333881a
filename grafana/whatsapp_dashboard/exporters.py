"""The Exporter fleet and Exporter rows: the exporters themselves, their replicas and polls."""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import common
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from whatsapp_support_exporter.upstream.errors import Reason

from .panels import (
    OK_FAILED,
    bar_panel,
    organize,
    query,
    series_panel,
    steps,
    table_panel,
    timeline_panel,
)
from .promql import (
    EXPORTER,
    LEGEND_TARGET,
    TARGET,
    by,
    exporter_sel,
    sel,
)

# The exporter withdraws a target's data 3 x the poll interval (30 s) after its last success.
STALE_AFTER_SECONDS = 90


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
            f"Failed polls per second by reason ({', '.join(Reason)}; internal is the "
            "exporter's own fault, never the upstream's), beside all polls per second.",
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
