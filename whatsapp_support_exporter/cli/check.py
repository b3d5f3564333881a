"""``whatsapp-support-exporter check``: validate the settings, poll every target and Cloud API
account once, show a table of each.

The first thing to run after writing a configuration: exit 0 when every target and account
answered, 1 when one did not, 2 on bad settings. Every shard's targets and accounts are polled,
whatever ``--shard`` says.
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
    account_warnings,
    build_parser,
    load_settings,
    target_warnings,
    variable_warnings,
)
from whatsapp_support_exporter.fleet.config import ConfigError, FleetConfig, load_fleet
from whatsapp_support_exporter.fleet.poller import ssl_for
from whatsapp_support_exporter.fleet.settings import Settings
from whatsapp_support_exporter.output.status import (
    ACCOUNTS,
    TARGETS,
    Row,
    account_not_answered,
    account_row,
    not_answered,
    target_rows,
)
from whatsapp_support_exporter.upstream.cloud.account import CloudAccount
from whatsapp_support_exporter.upstream.cloud.client import CloudAnswer, CloudClient
from whatsapp_support_exporter.upstream.errors import PollError
from whatsapp_support_exporter.upstream.http import new_session
from whatsapp_support_exporter.upstream.onprem.client import Answer, Client
from whatsapp_support_exporter.upstream.onprem.target import Target

HEADER = TARGETS.header
# ANSI colours of a row by its state on a terminal (the word says the same without colour)
COLORS = {"down": "31", "critical": "31", "warning": "33"}


def parser() -> argparse.ArgumentParser:
    """check's own usage: the same flags as the exporter's, another purpose."""
    return build_parser(
        prog=f"{PROG} check",
        description="Validate the settings, poll every target once (and every Cloud API account;"
        " all shards) and print one row per target and container (state, build expiry, socket,"
        " least free space, error) and per account (state, numbers, worst quality, error)."
        " Exit 0 when every target answered (and every account), 1 when one did not, 2 on bad"
        " settings.",
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
        fleet = load_fleet(settings)
    except ConfigError as err:
        print(f"{PROG} check: {err}", file=sys.stderr)
        return 2
    _warn(
        target_warnings(settings, fleet.targets)
        + account_warnings(fleet.accounts, settings.cloud_token_set)
    )
    results, answers = asyncio.run(poll_everything(settings, fleet))
    failed = sum(1 for _, outcome in results if isinstance(outcome, PollError))
    failed_accounts = sum(1 for _, outcome in answers if isinstance(outcome, PollError))
    if results or not answers:
        print_table([row.line for row in rows(results, time.time())], sys.stdout)
        print(f"\n{len(results) - failed} of {len(results)} targets answered.")
    if answers:
        if results:
            print()
        table = [row.line for row in account_rows(answers)]
        print_table(table, sys.stdout, ACCOUNTS.header)
        print(f"\n{len(answers) - failed_accounts} of {len(answers)} accounts answered.")
    return 1 if failed or failed_accounts else 0


async def poll_everything(
    settings: Settings, fleet: FleetConfig
) -> tuple[
    list[tuple[Target, Answer | PollError]], list[tuple[CloudAccount, CloudAnswer | PollError]]
]:
    """Targets and accounts polled at the same time."""
    return await asyncio.gather(
        poll_all(settings, fleet.targets), poll_accounts(settings, fleet.accounts)
    )


async def poll_accounts(
    settings: Settings, accounts: list[CloudAccount]
) -> list[tuple[CloudAccount, CloudAnswer | PollError]]:
    """One attempt per Cloud API account, at most --poll.max-concurrency at once."""
    if not accounts:
        return []
    session = new_session(settings.max_concurrency, 5.0)
    slots = asyncio.Semaphore(settings.max_concurrency)

    async def one(account: CloudAccount) -> tuple[CloudAccount, CloudAnswer | PollError]:
        client = CloudClient(
            session,
            account,
            timeout=settings.poll_timeout,
            max_response_bytes=settings.max_response_bytes,
            max_series=settings.max_series,
        )
        async with slots:
            try:
                return account, await client.attempt()
            except PollError as err:
                return account, err

    try:
        return list(await asyncio.gather(*(one(a) for a in accounts)))
    finally:
        await session.close()


def account_rows(results: list[tuple[CloudAccount, CloudAnswer | PollError]]) -> list[Row]:
    """One row per account: state, numbers, worst quality, notes or the error."""
    out: list[Row] = []
    for account, outcome in results:
        if isinstance(outcome, PollError):
            error = f"{outcome.reason}: {outcome.detail}"
            out.append(account_not_answered(account.name, account.waba_id, "down", error))
            continue
        out.append(
            account_row(account.name, account.waba_id, outcome.waba, outcome.numbers, outcome.usage)
        )
    return out


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


def print_table(
    table: list[tuple[str, ...]], stream: TextIO, header_row: tuple[str, ...] = HEADER
) -> None:
    """Plain aligned columns; bold header and coloured failing rows (red, warnings yellow) only
    on a terminal without NO_COLOR."""
    color = stream.isatty() and not os.environ.get("NO_COLOR")  # no-color.org: set, non-empty
    widths = [max(len(row[i]) for row in [header_row, *table]) for i in range(len(header_row))]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(
            cell.ljust(width) for cell, width in zip(row, widths, strict=True)
        ).rstrip()

    header = line(header_row)
    print(f"\033[1m{header}\033[0m" if color else header, file=stream)
    for row in table:
        text = line(row)
        if color and row[2] in COLORS:
            text = f"\033[{COLORS[row[2]]}m{text}\033[0m"
        print(text, file=stream)
