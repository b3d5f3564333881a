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
from whatsapp_support_exporter.upstream.errors import PollError
from whatsapp_support_exporter.upstream.onprem.client import Answer, Client, new_session
from whatsapp_support_exporter.upstream.onprem.support import utc_seconds
from whatsapp_support_exporter.upstream.onprem.target import Target

HEADER = ("target", "container", "state", "expires in", "socket", "least free", "error")


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
    print_table(rows(results, time.time()), sys.stdout)
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


def _bytes(value: float) -> str:
    if value >= 9e18:
        return "unlimited"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return ""  # pragma: no cover


def rows(results: list[tuple[Target, Answer | PollError]], now: float) -> list[tuple[str, ...]]:
    """One row per target and container: state, expiry in days, socket, least free space."""
    out: list[tuple[str, ...]] = []
    for target, outcome in results:
        if isinstance(outcome, PollError):
            out.append((target.name, "", "down", "", "", "", f"{outcome.reason}: {outcome.detail}"))
            continue
        notes = [f"{name}: {err.reason}" for name, err in outcome.endpoints if err is not None]
        for data in outcome.support.containers:
            c = data.fields
            container = f"{data.host}:{data.container_id}" if data.host is not None else ""
            expiry = ""
            if c.expire_timestamp is not None:
                expiry = f"{(utc_seconds(c.expire_timestamp) - now) / 86400:.1f} days"
            least = _bytes(min(c.free_space.values())) if c.free_space else ""
            row = (
                target.name,
                container,
                "up",
                expiry,
                c.socket_conn or "",
                least,
                "; ".join(notes),
            )
            out.append(row)
    return out


def print_table(table: list[tuple[str, ...]], stream: TextIO) -> None:
    """Plain aligned columns; bold header and red "down" only on a terminal without NO_COLOR."""
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
        if color and row[2] == "down":
            text = f"\033[31m{text}\033[0m"
        print(text, file=stream)
