"""One dashboard panel drawn with matplotlib from Prometheus' answers, as Grafana would show it.

Values are formatted in the panel's unit, coloured by its value mappings and thresholds; each
panel type (stat, bar gauge, table, time series, state timeline) has its own function.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from matplotlib.axes import Axes
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, MaxNLocator
from prometheus_api import Prometheus, Series

# Grafana's dark theme and named colours
BACKGROUND, PANEL, BORDER, TEXT, DIM = "#111217", "#181b1f", "#2c3235", "#ccccdc", "#8e8e9e"
COLORS = {
    "green": "#73BF69",
    "red": "#F2495C",
    "orange": "#FF9830",
    "yellow": "#FADE2A",
    "blue": "#5794F2",
    "purple": "#B877D9",
    "text": "#8e8e9e",
}
PALETTE = ["#73BF69", "#F2CC0C", "#8AB8FF", "#FF780A", "#F2495C", "#5794F2", "#B877D9", "#705DA0"]

Panel = dict[str, Any]
Legend = list[tuple[str, str, str]]  # (text, colour, "line" | "patch")


# ---------------------------------------------------------------- formatting


def fmt_number(value: float, decimals: int = 3) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.{decimals}g}"


def fmt_unit(value: float, unit: str | None) -> str:
    """A value as Grafana's unit would write it (the units this dashboard uses)."""
    if math.isnan(value):
        return "NaN"
    if unit == "bytes":
        for prefix in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
            if abs(value) < 1024 or prefix == "EiB":
                return f"{value:.3g} {prefix}" if prefix != "B" else f"{value:.0f} B"
            value /= 1024
    if unit in ("s", "dtdurations"):
        sign, value = ("-" if value < 0 else ""), abs(value)
        for size, name in ((31536000, "year"), (604800, "week"), (86400, "day"), (3600, "hour")):
            if value >= size:
                return f"{sign}{value / size:.3g} {name}"
        if value >= 60:
            return f"{sign}{value / 60:.3g} min"
        if value >= 1 or value == 0:
            return f"{sign}{value:.3g} s"
        return f"{sign}{value * 1000:.3g} ms"
    if unit == "reqps":
        return f"{value:.3g} req/s"
    if unit == "dateTimeAsIso":
        return datetime.fromtimestamp(value / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return fmt_number(value)


def mapped(value: float, mappings: Sequence[dict[str, Any]]) -> tuple[str, str] | None:
    """Grafana's value mappings: (text, colour) of the first that matches."""
    for mapping in mappings:
        options = mapping["options"]
        if mapping["type"] == "value":
            hit = options.get(fmt_number(value))
            if hit is not None:
                return str(hit.get("text")), COLORS.get(hit.get("color", ""), TEXT)
        elif mapping["type"] == "range":
            low, high = options.get("from"), options.get("to")
            if (low is None or value >= low) and (high is None or value <= high):
                result = options["result"]
                return str(result.get("text")), COLORS.get(result.get("color", ""), TEXT)
    return None


def threshold_color(value: float, thresholds: dict[str, Any] | None, default: str) -> str:
    if not thresholds:
        return default
    color = default
    for step in thresholds.get("steps", []):
        if step["value"] is None or value >= step["value"]:
            color = COLORS.get(step["color"], step["color"])
    return color


def legend(series: Series, template: str) -> str:
    labels = series["metric"]
    if not template:
        return ", ".join(f"{k}={v}" for k, v in labels.items() if k != "__name__") or "value"
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)
    text = re.sub(r"\s+", " ", text).replace("( ", "(").replace(" )", ")").strip()
    return text.replace("()", "").strip()


def display(value: float, defaults: dict[str, Any]) -> tuple[str, str | None]:
    """The text of a value (mapping, else unit) and the colour a mapping gives it."""
    hit = mapped(value, defaults.get("mappings", []))
    if hit:
        return hit
    return fmt_unit(value, defaults.get("unit")), None


# ---------------------------------------------------------------- panels


@dataclass
class Context:
    prometheus: Prometheus
    start: float
    end: float
    step: float


def field(panel: Panel) -> dict[str, Any]:
    defaults: dict[str, Any] = panel.get("fieldConfig", {}).get("defaults", {})
    return defaults


def draw_stat(ax: Axes, panel: Panel, ctx: Context) -> Legend:
    defaults = field(panel)
    cells = []
    for target in panel["targets"]:
        for series in ctx.prometheus.instant(target["expr"], ctx.end):
            cells.append((target.get("legendFormat", ""), float(series["value"][1])))
    if not cells:
        return no_data(ax)
    width = 1 / len(cells)
    for i, (name, value) in enumerate(cells):
        text, color = display(value, defaults)
        color = color or threshold_color(value, defaults.get("thresholds"), COLORS["blue"])
        ax.add_patch(
            Rectangle((i * width + 0.01, 0.02), width - 0.02, 0.96, color=color, alpha=0.85)
        )
        size = 22 if len(text) < 10 else 16
        ax.text(
            i * width + width / 2,
            0.45,
            text,
            ha="center",
            va="center",
            fontsize=size,
            color="white",
            weight="bold",
        )
        if name:
            ax.text(
                i * width + width / 2,
                0.85,
                name,
                ha="center",
                va="center",
                fontsize=9,
                color="white",
            )
    return []


def draw_bargauge(ax: Axes, panel: Panel, ctx: Context) -> Legend:
    defaults = field(panel)
    bars = []
    for target in panel["targets"]:
        for series in ctx.prometheus.instant(target["expr"], ctx.end):
            bars.append((legend(series, target.get("legendFormat", "")), float(series["value"][1])))
    if not bars:
        return no_data(ax)
    if not panel["targets"][0]["expr"].startswith("sort"):
        bars.sort(key=lambda bar: bar[0])
    top = max(abs(v) for _, v in bars) or 1
    bars, more = fit(ax, bars)
    height = min(1 / (len(bars) + (1 if more else 0)), 26 / ax.bbox.height)
    fontsize = 7.5
    if more:
        ax.text(
            0.5,
            1 - (len(bars) + 0.5) * height,
            f"+{more} more (Grafana scrolls)",
            ha="center",
            va="center",
            fontsize=7,
            color=DIM,
        )
    for i, (name, value) in enumerate(bars):
        y = 1 - (i + 1) * height
        color = threshold_color(value, defaults.get("thresholds"), COLORS["green"])
        text, mapped_color = display(value, defaults)
        ax.add_patch(Rectangle((0.38, y + height * 0.15), 0.47, height * 0.7, color=BORDER))
        ax.add_patch(
            Rectangle(
                (0.38, y + height * 0.15),
                0.47 * max(value, 0) / top,
                height * 0.7,
                color=mapped_color or color,
            )
        )
        ax.text(0.37, y + height / 2, name, ha="right", va="center", fontsize=fontsize, color=TEXT)
        ax.text(
            0.86,
            y + height / 2,
            text,
            ha="left",
            va="center",
            fontsize=fontsize,
            color=mapped_color or color,
            weight="bold",
        )
    return []


ROW_PX = 17  # the smallest readable row of a table or a bar


def fit(
    ax: Axes, items: list[Any], reserve: int = 0, row_px: float = ROW_PX
) -> tuple[list[Any], int]:
    """As many items as fit in the axes at a readable size, and how many are left out."""
    room = max(1, int(ax.bbox.height // row_px) - reserve)
    if len(items) <= room:
        return items, 0
    return items[: room - 1], len(items) - (room - 1)


def merge_rows(panel: Panel, ctx: Context) -> list[dict[str, Any]]:
    """Grafana's "merge": one row per label set, each query's value as ``Value #<ref>``."""
    rows: list[dict[str, Any]] = []
    single = len(panel["targets"]) == 1
    for target in panel["targets"]:
        column = "Value" if single else f"Value #{target['refId']}"
        for series in ctx.prometheus.instant(target["expr"], ctx.end):
            labels = {k: v for k, v in series["metric"].items() if k != "__name__"}
            record = {**labels, column: float(series["value"][1])}
            for row in rows:
                shared = set(row) & set(labels)
                if shared and all(row[k] == labels[k] for k in shared) and column not in row:
                    row.update(record)
                    break
            else:
                rows.append(record)
    return rows


def organize(panel: Panel, rows: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    options: dict[str, Any] = {}
    for transformation in panel.get("transformations", []):
        if transformation["id"] == "organize":
            options = transformation["options"]
    exclude, rename = options.get("excludeByName", {}), options.get("renameByName", {})
    order = options.get("indexByName", {})
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns and not exclude.get(c)]
    named = [rename.get(c, c) for c in columns]
    renamed = [{rename.get(k, k): v for k, v in row.items()} for row in rows]
    named.sort(
        key=lambda c: order.get(c, order.get(next((k for k, v in rename.items() if v == c), c), 99))
    )
    return named, renamed


def draw_table(ax: Axes, panel: Panel, ctx: Context) -> Legend:
    defaults = field(panel)
    columns, rows = organize(panel, merge_rows(panel, ctx))
    if not rows:
        return no_data(ax)
    overrides = {
        o["matcher"]["options"]: {p["id"]: p["value"] for p in o["properties"]}
        for o in panel.get("fieldConfig", {}).get("overrides", [])
    }
    rows.sort(key=lambda r: tuple(str(r.get(c, "")) for c in columns))
    for transformation in panel.get("transformations", []):
        if transformation["id"] == "sortBy":
            (key,) = transformation["options"]["sort"]
            rows.sort(key=lambda r: r.get(key["field"], -math.inf), reverse=key["desc"])
    rows, more = fit(ax, rows, reserve=1)
    line = min(1 / (len(rows) + 1 + (1 if more else 0)), 24 / ax.bbox.height)
    fontsize = 7.5
    if more:
        ax.text(
            0.5,
            1 - (len(rows) + 1.5) * line,
            f"+{more} more rows (Grafana scrolls)",
            ha="center",
            va="center",
            fontsize=7,
            color=DIM,
        )
    widths = [
        max(len(c), *(len(cell_text(r.get(c), c, defaults, overrides)[0]) for r in rows))
        for c in columns
    ]
    total = sum(widths) or 1
    x = [sum(widths[:i]) / total for i in range(len(columns))]
    for i, column in enumerate(columns):
        ax.text(
            x[i] + 0.005,
            1 - line / 2,
            column,
            ha="left",
            va="center",
            fontsize=fontsize,
            color=COLORS["blue"],
            weight="bold",
        )
    for j, row in enumerate(rows):
        y = 1 - (j + 1.5) * line
        for i, column in enumerate(columns):
            text, background = cell_text(row.get(column), column, defaults, overrides)
            if background:
                w = widths[i] / total
                ax.add_patch(Rectangle((x[i], y - line / 2), w, line, color=background, alpha=0.8))
            ax.text(
                x[i] + 0.005,
                y,
                text,
                ha="left",
                va="center",
                fontsize=fontsize,
                color="white" if background else TEXT,
            )
        ax.axhline(y - line / 2, color=BORDER, linewidth=0.5)
    return []


def cell_text(
    value: Any, column: str, defaults: dict[str, Any], overrides: dict[str, dict[str, Any]]
) -> tuple[str, str | None]:
    if value is None:
        return "", None
    if not isinstance(value, float):
        return str(value), None
    own = {**defaults, **overrides.get(column, {})}
    text, color = display(value, own)
    colored = own.get("custom.cellOptions", {}).get("type") == "color-background"
    if colored:
        color = color or threshold_color(value, own.get("thresholds"), COLORS["green"])
        return text, color
    return text, None


def time_axis(ax: Axes, ctx: Context) -> None:
    pattern = "%H:%M:%S" if ctx.end - ctx.start < 900 else "%H:%M"
    ax.xaxis.set_major_formatter(
        FuncFormatter(lambda v, _: datetime.fromtimestamp(v, UTC).strftime(pattern))
    )
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.tick_params(colors=DIM, labelsize=7)
    for spine in ax.spines.values():
        spine.set_color(BORDER)


def draw_timeseries(ax: Axes, panel: Panel, ctx: Context) -> Legend:
    defaults = field(panel)
    lines = []
    for target in panel["targets"]:
        for series in ctx.prometheus.range(target["expr"], ctx.start, ctx.end, ctx.step):
            times = [float(t) for t, _ in series["values"]]
            values = [float(v) for _, v in series["values"]]
            lines.append((legend(series, target.get("legendFormat", "")), times, values))
    if not lines:
        return no_data(ax)
    lines.sort(key=lambda line: line[0])
    for i, (name, times, values) in enumerate(lines):
        ax.plot(times, values, color=PALETTE[i % len(PALETTE)], linewidth=1.2, label=name)
    unit = defaults.get("unit")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_unit(v, unit)))
    ax.yaxis.set_major_locator(MaxNLocator(4))
    custom = defaults.get("custom", {})
    low, high = ax.get_ylim()  # Grafana: the data's range, widened to the soft limits
    low = min(low, custom.get("axisSoftMin", low))
    high = max(high, custom.get("axisSoftMax", high))
    ax.set_ylim(low, high)
    if custom.get("thresholdsStyle", {}).get("mode") == "line":
        for step in defaults.get("thresholds", {}).get("steps", []):
            if step["value"] is not None and low <= step["value"] <= high:
                ax.axhline(
                    step["value"],
                    color=COLORS.get(step["color"], step["color"]),
                    linestyle="--",
                    linewidth=1,
                )
    ax.set_facecolor(PANEL)
    ax.grid(color=BORDER, linewidth=0.5)
    time_axis(ax, ctx)
    return [(name, PALETTE[i % len(PALETTE)], "line") for i, (name, _, _) in enumerate(lines)]


def draw_state_timeline(ax: Axes, panel: Panel, ctx: Context) -> Legend:
    defaults = field(panel)
    rows = []
    for target in panel["targets"]:
        for series in ctx.prometheus.range(target["expr"], ctx.start, ctx.end, ctx.step):
            rows.append((legend(series, target.get("legendFormat", "")), series["values"]))
    if not rows:
        return no_data(ax)
    rows.sort(key=lambda row: row[0])
    seen: dict[str, str] = {}
    rows, more = fit(ax, rows, row_px=11.5)  # Grafana squeezes a timeline's rows
    rows.reverse()  # the first row on top
    for i, (_, values) in enumerate(rows):
        for begin, finish, v in runs(values, ctx.step):
            text, color = display(v, defaults)
            color = color or COLORS["blue"]
            seen[text] = color
            ax.broken_barh(
                [(begin, finish - begin)],
                (i + 0.1, 0.8),
                facecolors=color,
            )
    if more:
        ax.set_title(f"+{more} more rows (Grafana scrolls)", fontsize=7, color=DIM, loc="right")
    ax.set_ylim(0, len(rows))
    ax.set_yticks([i + 0.5 for i in range(len(rows))])
    ax.set_yticklabels([name for name, _ in rows], fontsize=6.5, color=TEXT)
    ax.set_xlim(ctx.start, ctx.end)
    ax.set_facecolor(PANEL)
    time_axis(ax, ctx)
    return [(text, color, "patch") for text, color in seen.items()]


LEGEND_ROW_PX, LEGEND_COLUMN_PX = 13, 120


def draw_legend(ax: Axes, entries: Legend) -> None:
    """Grafana's list legend under a graph: as many entries as fit, then how many more."""
    ax.set_axis_off()
    ax.set_xlim(0, ax.bbox.width)  # in pixels
    ax.set_ylim(0, ax.bbox.height)
    column_px = max(LEGEND_COLUMN_PX, 5.3 * max(len(text) for text, _, _ in entries) + 24)
    columns = max(1, int(ax.bbox.width // column_px))
    rows = max(1, int(ax.bbox.height // LEGEND_ROW_PX))
    shown = entries if len(entries) <= rows * columns else entries[: rows * columns - 1]
    cells = [*shown, ("", "", "more")] if len(shown) < len(entries) else shown
    for i, (text, color, kind) in enumerate(cells):
        x = (i // rows) * column_px
        y = ax.bbox.height - (i % rows + 0.5) * LEGEND_ROW_PX
        if kind == "more":
            ax.text(
                x,
                y,
                f"+{len(entries) - len(shown)} more series",
                fontsize=6.5,
                color=DIM,
                va="center",
            )
            continue
        if kind == "line":
            ax.plot([x, x + 12], [y, y], color=color, linewidth=2)
        else:
            ax.add_patch(Rectangle((x, y - 4), 10, 8, color=color))
        ax.text(x + 16, y, text, fontsize=6.5, color=TEXT, va="center")


def runs(values: list[list[Any]], step: float) -> Iterator[tuple[float, float, float]]:
    """(start, end, value) of each run of equal samples; a missing sample ends a run."""
    run: list[float] | None = None
    for t, v in values:
        at, value = float(t), float(v)
        if run is not None and (value != run[2] or at - run[1] > 1.5 * step):
            yield run[0], run[1], run[2]
            run = None
        if run is None:
            run = [at, at + step, value]
        else:
            run[1] = at + step
    if run is not None:
        yield run[0], run[1], run[2]


def no_data(ax: Axes) -> Legend:
    ax.set_axis_off()
    ax.text(
        0.5,
        0.5,
        "No data",
        ha="center",
        va="center",
        fontsize=11,
        color=DIM,
        transform=ax.transAxes,
    )
    return []


DRAW = {
    "stat": draw_stat,
    "bargauge": draw_bargauge,
    "table": draw_table,
    "timeseries": draw_timeseries,
    "state-timeline": draw_state_timeline,
}
AXES_TYPES = {"timeseries", "state-timeline"}  # drawn with real axes, the others on a blank
