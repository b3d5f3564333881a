"""The whole dashboard on one PNG: each panel where its gridPos puts it, under a title bar."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from panel_drawing import (
    AXES_TYPES,
    BACKGROUND,
    BORDER,
    COLORS,
    DIM,
    DRAW,
    PANEL,
    TEXT,
    Context,
    draw_legend,
    field,
)

UNIT_PX, WIDTH_PX, DPI = 30, 1900, 100


def render(dashboard: dict[str, Any], ctx: Context, output: Path) -> None:
    panels = dashboard["panels"]
    rows_high = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    header = 2
    height_px = (rows_high + header) * UNIT_PX
    fig: Figure = plt.figure(figsize=(WIDTH_PX / DPI, height_px / DPI), dpi=DPI)
    fig.patch.set_facecolor(BACKGROUND)
    window = (
        f"{datetime.fromtimestamp(ctx.start, UTC):%Y-%m-%d %H:%M}"
        f" to {datetime.fromtimestamp(ctx.end, UTC):%H:%M} UTC"
    )
    fig.text(
        0.01,
        1 - 0.8 * UNIT_PX / height_px,
        dashboard["title"],
        fontsize=16,
        color=TEXT,
        weight="bold",
        va="center",
    )
    fig.text(
        0.99,
        1 - 0.8 * UNIT_PX / height_px,
        f"job, instance, target: All    {window}    (rendered from Prometheus, not Grafana)",
        fontsize=9,
        color=DIM,
        ha="right",
        va="center",
    )

    def box(pos: dict[str, int]) -> tuple[float, float, float, float]:
        left, width = pos["x"] / 24, pos["w"] / 24
        top = (pos["y"] + header) * UNIT_PX / height_px
        return left, 1 - top - pos["h"] * UNIT_PX / height_px, width, pos["h"] * UNIT_PX / height_px

    for panel in panels:
        left, bottom, width, height = box(panel["gridPos"])
        if panel["type"] == "row":
            fig.text(
                left + 0.005,
                bottom + height / 2,
                panel["title"],
                fontsize=12,
                color=TEXT,
                weight="bold",
                va="center",
            )
            continue
        pad_x, pad_y = 0.003, 3 / height_px
        frame = fig.add_axes((left + pad_x, bottom + pad_y, width - 2 * pad_x, height - 2 * pad_y))
        frame.set_facecolor(PANEL)
        frame.set_xticks([])
        frame.set_yticks([])
        for spine in frame.spines.values():
            spine.set_color(BORDER)
        title_h = 22 / (height * height_px)
        unit = field(panel).get("unit")
        frame.text(
            0.01,
            1 - title_h / 2,
            panel["title"],
            fontsize=9.5,
            color=TEXT,
            weight="bold",
            va="center",
            transform=frame.transAxes,
        )
        if unit and unit != "none":
            frame.text(
                0.99,
                1 - title_h / 2,
                unit,
                fontsize=7.5,
                color=DIM,
                ha="right",
                va="center",
                transform=frame.transAxes,
            )
        inner_top = height - 2 * pad_y - 24 / height_px
        inner_left, inner_width = left + pad_x, width - 2 * pad_x
        if panel["type"] in AXES_TYPES:
            legend_room = min(0.3 * inner_top, 48 / height_px)
            axis_room = 22 / height_px  # the time axis' labels
            left_room = 58 / WIDTH_PX
            if panel["type"] == "state-timeline":
                left_room = min(0.45 * inner_width, 0.18 * inner_width + 205 / WIDTH_PX)
            rect = (
                inner_left + left_room,
                bottom + pad_y + legend_room + axis_room,
                inner_width - left_room - 10 / WIDTH_PX,
                inner_top - legend_room - axis_room - 4 / height_px,
            )
            legend_rect = (
                inner_left + 6 / WIDTH_PX,
                bottom + pad_y + 2 / height_px,
                inner_width - 12 / WIDTH_PX,
                legend_room - 2 / height_px,
            )
        else:
            rect = (
                inner_left + 0.004,
                bottom + pad_y + 4 / height_px,
                inner_width - 0.008,
                inner_top - 6 / height_px,
            )
        ax = fig.add_axes(rect)
        ax.set_facecolor(PANEL)
        if panel["type"] not in AXES_TYPES:
            ax.set_axis_off()
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
        try:
            entries = DRAW[panel["type"]](ax, panel, ctx)
        except (OSError, RuntimeError) as err:
            entries = []
            ax.text(0.5, 0.5, f"query failed: {err}"[:120], ha="center", color=COLORS["red"])
        if entries:
            draw_legend(fig.add_axes(legend_rect), entries)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=DPI, facecolor=BACKGROUND)
    plt.close(fig)
