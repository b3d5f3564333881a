"""Panel builders shared by every row: one look per panel type, queries, thresholds, mappings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from grafana_foundation_sdk.builders import bargauge, common, prometheus, stat, statetimeline, table
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import timeseries as ts
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

from .promql import UNLIMITED

DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")

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
