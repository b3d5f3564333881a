"""The Cluster row: multiconnect shards, roles, gateways and schema versions."""

from __future__ import annotations

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import dashboard as dm

from .panels import (
    bar_panel,
    organize,
    query,
    state_mappings,
    steps,
    table_panel,
    timeline_panel,
)
from .promql import (
    CONTAINER,
    LEGEND_CONTAINER,
    LEGEND_TARGET,
    TARGET,
    by,
    sel,
    state_code,
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
