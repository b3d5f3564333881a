"""The Cloud API row: WhatsApp Business Accounts and their phone numbers (Graph API)."""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import common
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from .panels import (
    bar_panel,
    organize,
    override,
    query,
    series_panel,
    stat_panel,
    state_mappings,
    steps,
    table_panel,
    timeline_panel,
)
from .promql import (
    ACCOUNT,
    LEGEND_NUMBER,
    NUMBER,
    by,
    cloud_sel,
    state_code,
)

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
) -> list[cogbuilder.Builder[dm.DashboardFieldConfigSourceOverrides]]:
    """Each state's bar or line in its own colour (overrides by series name)."""
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
