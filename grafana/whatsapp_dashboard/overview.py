"""The Overview row: the fleet's On-Premises health at a glance."""

from __future__ import annotations

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from .panels import (
    UNLIMITED_MAPPING,
    query,
    stat_panel,
    steps,
)
from .promql import (
    DAY,
    per_container,
    sel,
)


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
