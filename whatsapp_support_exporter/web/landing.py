"""The landing page: what an operator opens ``/`` for, as static HTML (no script, no asset).

One table per :class:`Section`: the targets' rows (``output/status.py``, the rows ``check``
prints), failing ones first, each with its state as a word and a row colour. Everything shown is
escaped; nothing here sees a credential (snapshots hold none).
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from whatsapp_support_exporter import __version__
from whatsapp_support_exporter.output.status import (
    ACCOUNTS,
    STATES,
    TARGETS,
    Kind,
    Row,
    account_snapshot_row,
    snapshot_rows,
    worst_first,
)
from whatsapp_support_exporter.output.store import Store


@dataclass(frozen=True)
class Section:
    """One table of the landing page: a kind of row (targets; Cloud API accounts next), its
    rows, and the columns only the page shows (by row name: how long ago, how many polls)."""

    kind: Kind
    rows: list[Row]
    extra_columns: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def target_section(store: Store, now: float) -> Section:
    """Every target's rows, worst first, with how long ago it answered, its polls and URL."""
    rows: list[Row] = []
    extra: dict[str, tuple[str, ...]] = {}
    for snap in store.snapshots.values():
        rows.extend(snapshot_rows(snap, now))
        age = "never" if snap.last_success is None else f"{now - snap.last_success:.0f}s ago"
        extra[snap.name] = (age, str(snap.polls), snap.url)
    return Section(TARGETS, worst_first(rows), ("last success", "polls", "URL"), extra)


def account_section(store: Store, now: float) -> Section:
    """Every Cloud API account's row, worst first, with how long ago it answered and its polls."""
    rows: list[Row] = []
    extra: dict[str, tuple[str, ...]] = {}
    for snap in store.accounts.values():
        rows.append(account_snapshot_row(snap))
        age = "never" if snap.last_success is None else f"{now - snap.last_success:.0f}s ago"
        extra[snap.name] = (age, str(snap.polls))
    return Section(ACCOUNTS, worst_first(rows), ("last success", "polls"), extra)


def _section_html(section: Section) -> str:
    kind = section.kind
    counts = Counter(row.state for row in section.rows)
    summary = ", ".join(f"{counts[s]} {s}" for s in STATES if counts[s]) or "none"
    header = "".join(f"<th>{_e(c)}</th>" for c in (*kind.header, *section.extra_columns))
    lines = []
    for row in section.rows:
        cells = "".join(f"<td>{_e(c)}</td>" for c in row.line[3:])
        extra = "".join(f"<td>{_e(c)}</td>" for c in section.extra.get(row.name, ()))
        lines.append(
            f'<tr class="{row.state}"><td>{_e(row.name)}</td><td>{_e(row.part)}</td>'
            f'<td class="state">{row.state}</td>{cells}{extra}</tr>'
        )
    count = len(section.rows)
    return (
        f"<h2>{_e(kind.title)}</h2>\n<p>{_e(summary)} ({count} row{'s' if count != 1 else ''},"
        " worst first)</p>\n"
        f"<table><tr>{header}</tr>\n" + "\n".join(lines) + "\n</table>\n"
    )


def _e(text: str) -> str:
    return html.escape(text, quote=True)


# Row colours by state; the state's word is in its own cell, so nothing depends on colour.
_STYLE = (
    "body{font-family:sans-serif}td,th{padding:2px 10px;text-align:left}"
    "tr.down,tr.critical{background:#f8d0d0}tr.warning{background:#fbeeb8}"
    "tr.starting{background:#e8e8e8}tr.up{background:#d8f0d8}td.state{font-weight:bold}"
)


def landing_page(
    sections: Sequence[Section], *, telemetry_path: str, config_status: str | None
) -> str:
    """The whole page: one table per section (targets; Cloud API accounts join as a second)."""
    path = _e(telemetry_path)
    config = f"<p>Configuration: {_e(config_status)}</p>" if config_status is not None else ""
    tables = "".join(_section_html(section) for section in sections)
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>WhatsApp Support Exporter</title>
<style>{_STYLE}</style></head>
<body><h1>WhatsApp Support Exporter</h1>
<p>Version {_e(__version__)}. Polls <code>/v1/support</code> of each WhatsApp Business API
client on its own schedule and serves the result. States, worst first: down (the last poll
failed), critical (build expired or expiring within 3 days, socket or gateway not connected),
warning (build expiring within 14 days, under 2 GiB free, an optional endpoint failing),
starting, up. A Cloud API account is critical when it or a number is BLOCKED, a number is RED,
not CONNECTED or still on ON_PREMISE, and warning when LIMITED, YELLOW or at 90 % of the Graph
API's rate limit. This page is at most a second old; reload it to refresh.</p>
<p><a href="{path}">Metrics</a> · <a href="/sd">Targets (http_sd)</a> ·
<a href="/-/healthy">Health</a> · <a href="/-/ready">Ready</a></p>
{config}
{tables}</body></html>
"""
