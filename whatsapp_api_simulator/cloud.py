"""A fake Graph API (the WhatsApp Cloud API's management side), for the demo, tests and benchmarks.

It serves what the exporter asks of the Cloud API: `GET /<version>/<WABA_ID>?fields=...`,
`GET /<version>/<WABA_ID>/phone_numbers?fields=...&limit=N` with Graph paging, and
`GET /<version>/<PHONE_NUMBER_ID>`, behind `Authorization: Bearer <token>`, with the
`X-Business-Use-Case-Usage` header on every answer, an hourly rate limit, Graph error bodies,
injected faults and numbers whose state moves with the clock.

This is the module to import: start it with `start_graph()` (an awaitable and an async context
manager), mount it beside the On-Premises simulator with `GraphSimulator.install(app)`, or run
`python -m whatsapp_api_simulator --graph-demo --graph-accounts 3`. The accounts live in
`cloud_model.py` and `cloud_accounts.py`, the wire in `cloud_app.py`; `docs/simulator.md` has
the tour. Nothing here imports the exporter.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Generator
from types import TracebackType
from typing import Any

from aiohttp import web

from whatsapp_api_simulator.cloud_accounts import (
    every_state_numbers,
    flag_and_restore,
    migration,
    plain_numbers,
    quality_swing,
    unknown_number,
)
from whatsapp_api_simulator.cloud_app import (
    AUTH_CODES,
    RATE_LIMIT_CODES,
    UNAVAILABLE_CODES,
    USAGE_HEADER,
    GraphSimulator,
    graph_error,
)
from whatsapp_api_simulator.cloud_model import (
    ACCOUNT_MODES,
    ACCOUNT_REVIEW_STATUSES,
    BUSINESS_VERIFICATION_STATUSES,
    CAN_SEND,
    CODE_VERIFICATION_STATUSES,
    MESSAGING_TIERS,
    MISSING,
    NAME_STATUSES,
    PLATFORMS,
    QUALITY_RATINGS,
    STATUSES,
    THROUGHPUT_LEVELS,
    Account,
    Entity,
    GraphFault,
    PhoneNumber,
    Script,
    blocked,
    graph_time,
    limited,
)

__all__ = [
    "ACCOUNT_MODES",
    "ACCOUNT_REVIEW_STATUSES",
    "AUTH_CODES",
    "BUSINESS_VERIFICATION_STATUSES",
    "CAN_SEND",
    "CODE_VERIFICATION_STATUSES",
    "MESSAGING_TIERS",
    "MISSING",
    "NAME_STATUSES",
    "PLATFORMS",
    "QUALITY_RATINGS",
    "RATE_LIMIT_CODES",
    "STATUSES",
    "THROUGHPUT_LEVELS",
    "UNAVAILABLE_CODES",
    "USAGE_HEADER",
    "Account",
    "Entity",
    "GraphFault",
    "GraphServer",
    "GraphSimulator",
    "PhoneNumber",
    "Script",
    "add_graph_arguments",
    "blocked",
    "describe",
    "every_state_numbers",
    "flag_and_restore",
    "graph_error",
    "graph_from_args",
    "graph_time",
    "limited",
    "migration",
    "plain_numbers",
    "quality_swing",
    "start_graph",
    "unknown_number",
]


class GraphServer:
    """A running simulated Graph API: `url` (the exporter's `graph_url`), `token`, `waba_ids`,
    the simulator itself as `sim` for control, and `close()`."""

    def __init__(self, sim: GraphSimulator, runner: web.AppRunner, url: str) -> None:
        self.sim = sim
        self.url = url
        self._runner = runner

    @property
    def token(self) -> str:
        return self.sim.token

    @property
    def waba_ids(self) -> list[str]:
        return self.sim.waba_ids

    def account(self, which: str) -> Account:
        return self.sim.account(which)

    def rotate_token(self, *, keep_old: bool = False) -> str:
        return self.sim.rotate_token(keep_old=keep_old)

    def inject(self, waba_id: str | None = None, **fault: Any) -> GraphFault:
        return self.sim.inject(waba_id, **fault)

    async def close(self) -> None:
        await self._runner.cleanup()

    async def __aenter__(self) -> GraphServer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class _Starting:
    """What `start_graph` returns: await it, or use it as `async with`."""

    def __init__(self, starting: Callable[[], Any]) -> None:
        self._start = starting
        self._server: GraphServer | None = None

    def __await__(self) -> Generator[Any, None, GraphServer]:
        return self._start().__await__()  # type: ignore[no-any-return]

    async def __aenter__(self) -> GraphServer:
        self._server = await self._start()
        return self._server

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            await self._server.close()


def start_graph(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    sim: GraphSimulator | None = None,
    demo: bool = True,
    accounts: int = 0,
    numbers: int = 10,
    token: str | None = None,
    clock: Callable[[], float] = time.time,
    seed: int = 0,
) -> _Starting:
    """Serve a simulated Graph API on `host:port` (0: any free port).

    Without `sim`, one is built: the demo account (unless `demo=False`) and `accounts` accounts
    of `numbers` numbers each. `await start_graph(...)` or `async with start_graph(...) as g`.
    """
    if sim is None:
        sim = GraphSimulator(token=token, clock=clock, seed=seed)
        if demo:
            sim.add_demo_account()
        sim.add_accounts(accounts, numbers)
    built = sim

    async def start() -> GraphServer:
        runner = web.AppRunner(built.app(), access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError:
            await runner.cleanup()
            raise
        bound = runner.addresses[0][1]
        shown = f"[{host}]" if ":" in host else host
        return GraphServer(built, runner, f"http://{shown}:{bound}")

    return _Starting(start)


# --------------------------------------------------------------------- command line


def _count(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {value!r}")
    return int(value)


def _calls(value: str) -> int:
    if not value.isdigit() or int(value) == 0:
        raise argparse.ArgumentTypeError(f"expected a whole number > 0, got {value!r}")
    return int(value)


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not number > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {value!r}")
    return number


def add_graph_arguments(parser: argparse.ArgumentParser) -> None:
    """The `--graph-*` options of `python -m whatsapp_api_simulator`."""
    group = parser.add_argument_group(
        "Graph API (Cloud API)", "serve a simulated Graph API on the same port (off by default)"
    )
    group.add_argument("--graph-demo", action="store_true", help="the demo account")
    group.add_argument(
        "--graph-accounts", type=_count, default=0, metavar="N", help="plain accounts (acct-<i>)"
    )
    group.add_argument(
        "--graph-numbers", type=_count, default=10, metavar="M", help="numbers per plain account"
    )
    group.add_argument(
        "--graph-token", default=None, metavar="TOKEN", help="accepted token (default: random)"
    )
    group.add_argument(
        "--graph-period",
        type=_positive,
        default=600.0,
        metavar="SECONDS",
        help="period of the demo account's changes",
    )
    group.add_argument(
        "--graph-rate-limit",
        type=_calls,
        default=200,
        metavar="CALLS",
        help="calls per account and hour",
    )


def graph_from_args(args: argparse.Namespace) -> GraphSimulator | None:
    """The Graph simulator the options ask for, None when none does (the default).

    Any `--graph-*` option turns it on; without `--graph-accounts` it serves the demo account.
    """
    if not (args.graph_demo or args.graph_accounts or args.graph_token):
        return None
    sim = GraphSimulator(token=args.graph_token, seed=args.seed)
    if args.graph_demo or not args.graph_accounts:
        sim.add_demo_account(period=args.graph_period)
    sim.add_accounts(args.graph_accounts, args.graph_numbers)
    for account in sim.accounts.values():
        account.rate_limit = args.graph_rate_limit
    return sim


def describe(sim: GraphSimulator, base: str) -> str:
    """What to give the exporter, as its environment variables (one per line)."""
    accounts = ",".join(f"{a.label}={a.waba_id}" for a in sim.accounts.values())
    return f"WA_CLOUD_GRAPH_URL={base}\nWA_CLOUD_WABA_IDS={accounts}\nWA_CLOUD_TOKEN={sim.token}"
