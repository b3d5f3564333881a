"""``whatsapp-support-exporter check``: validate the settings, poll every target once, show a table.

The first thing to run after writing a configuration: exit 0 when every target answered, 1 when
one did not, 2 on bad settings. Every shard's targets are polled, whatever ``--shard`` says.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import TextIO

from whatsapp_support_exporter.cli.settings import (
    PROG,
    SettingsError,
    build_parser,
    load_settings,
    target_warnings,
    variable_warnings,
)
from whatsapp_support_exporter.fleet.config import ConfigError, load_targets
from whatsapp_support_exporter.fleet.poller import ssl_for
from whatsapp_support_exporter.fleet.settings import Settings
from whatsapp_support_exporter.output.status import TARGETS, Row, not_answered, target_rows
from whatsapp_support_exporter.upstream.errors import PollError
from whatsapp_support_exporter.upstream.onprem.client import Answer, Client, new_session
from whatsapp_support_exporter.upstream.onprem.target import Target

HEADER = TARGETS.header
# ANSI colours of a row by its state on a terminal (the word says the same without colour)
COLORS = {"down": "31", "critical": "31", "warning": "33"}


def parser() -> argparse.ArgumentParser:
    """check's own usage: the same flags as the exporter's, another purpose."""
    return build_parser(
        prog=f"{PROG} check",
        description="Validate the settings, poll every target once (all shards) and print one"
        " row per target and container: state, build expiry, socket, least free space, error."
        " Exit 0 when every target answered, 1 when one did not, 2 on bad settings.",
        epilog="",
    )


def main(argv: list[str]) -> int:
    try:
        settings = load_settings(argv, parser())
        if settings.demo:
            raise SettingsError("check polls configured targets; --demo has none")
    except SettingsError as err:  # one line; a misspelt name of the setting is in it
        print(f"{PROG} check: {err}", file=sys.stderr)
        return 2
    _warn(variable_warnings(os.environ))
    try:
        targets = load_targets(settings)
    except ConfigError as err:
        print(f"{PROG} check: {err}", file=sys.stderr)
        return 2
    _warn(target_warnings(settings, targets))
    results = asyncio.run(poll_all(settings, targets))
    print_table([row.line for row in rows(results, time.time())], sys.stdout)
    failed = sum(1 for _, outcome in results if isinstance(outcome, PollError))
    print(f"\n{len(results) - failed} of {len(results)} targets answered.")
    return 1 if failed else 0


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        print(f"{PROG} check: warning: {warning}", file=sys.stderr)


async def poll_all(
    settings: Settings, targets: list[Target]
) -> list[tuple[Target, Answer | PollError]]:
    """One attempt per target, at most --poll.max-concurrency at once."""
    session = new_session(settings.max_concurrency, 5.0)
    slots = asyncio.Semaphore(settings.max_concurrency)
    contexts = {t.tls: ssl_for(t.tls) for t in targets}

    async def one(target: Target) -> tuple[Target, Answer | PollError]:
        client = Client(
            session,
            target,
            timeout=settings.poll_timeout,
            max_response_bytes=settings.max_response_bytes,
            max_series=settings.max_series,
            ssl_context=contexts[target.tls],
        )
        async with slots:
            try:
                return target, await client.attempt(
                    health=settings.collector_health, shards=settings.collector_shards
                )
            except PollError as err:
                return target, err

    try:
        return list(await asyncio.gather(*(one(t) for t in targets)))
    finally:
        await session.close()


def rows(results: list[tuple[Target, Answer | PollError]], now: float) -> list[Row]:
    """One row per target and container (the landing page's rows, in the configuration's order)."""
    out: list[Row] = []
    for target, outcome in results:
        if isinstance(outcome, PollError):
            out.append(not_answered(target.name, "down", f"{outcome.reason}: {outcome.detail}"))
            continue
        failed = [f"{name} failed: {e.reason}" for name, e in outcome.endpoints if e is not None]
        out.extend(target_rows(target.name, outcome.support, outcome.health, failed, now))
    return out


def print_table(table: list[tuple[str, ...]], stream: TextIO) -> None:
    """Plain aligned columns; bold header and coloured failing rows (red, warnings yellow) only
    on a terminal without NO_COLOR."""
    color = stream.isatty() and not os.environ.get("NO_COLOR")  # no-color.org: set, non-empty
    widths = [max(len(row[i]) for row in [HEADER, *table]) for i in range(len(HEADER))]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(
            cell.ljust(width) for cell, width in zip(row, widths, strict=True)
        ).rstrip()

    header = line(HEADER)
    print(f"\033[1m{header}\033[0m" if color else header, file=stream)
    for row in table:
        text = line(row)
        if color and row[2] in COLORS:
            text = f"\033[{COLORS[row[2]]}m{text}\033[0m"
        print(text, file=stream)
