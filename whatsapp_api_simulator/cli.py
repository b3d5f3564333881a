"""The simulator's command line: `whatsapp-api-simulator`, `python -m whatsapp_api_simulator`.

It builds the On-Premises deployments the options ask for (`onprem.py`), mounts the Graph API
beside them when a `--graph-*` option is given (`cloud.py`), prints the targets and serves until
SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from aiohttp import web

from whatsapp_api_simulator.cloud import (
    GraphSimulator,
    add_graph_arguments,
    describe,
    graph_from_args,
)
from whatsapp_api_simulator.onprem import Simulator

__all__ = ["DEFAULT_PORT", "build_parser", "main"]

DEFAULT_PORT = 10043  # not 9090: that is Prometheus' own port


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m whatsapp_api_simulator`."""
    parser = argparse.ArgumentParser(
        prog="whatsapp-api-simulator",
        description="Fake WhatsApp Business API On-Premises clients for demos and tests.",
    )
    parser.add_argument(
        "--listen",
        type=_parse_listen,
        default=("127.0.0.1", DEFAULT_PORT),
        help=f"HOST:PORT to serve on (default 127.0.0.1:{DEFAULT_PORT}; port 0: any free one)",
    )
    parser.add_argument("--single", type=int, default=0, help="single instances (single-N)")
    parser.add_argument("--ha", type=int, default=0, help="HA clusters (ha-N)")
    parser.add_argument("--multiconnect", type=int, default=0, help="multiconnect clusters (mc-N)")
    parser.add_argument("--masters", type=int, default=2, help="masters per cluster")
    parser.add_argument("--coreapps", type=int, default=2, help="coreapps per cluster")
    parser.add_argument("--shards", type=int, default=1, help="shards per multiconnect cluster")
    parser.add_argument("--api-key", default=None, help="accept this Apikey")
    parser.add_argument("--username", default="admin", help="login user name")
    parser.add_argument("--password", default=None, help="login password (logins off if unset)")
    parser.add_argument("--rate", type=float, default=20.0, help="requests/s per instance")
    parser.add_argument("--burst", type=int, default=60, help="burst per instance")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated values")
    parser.add_argument(
        "--failover-every",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="fail over a master or kill a Coreapp of every cluster this often (0: never)",
    )
    add_graph_arguments(parser)
    return parser


def _build(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Simulator:
    sim = Simulator(
        api_key=args.api_key,
        username=args.username,
        password=args.password,
        rate=args.rate,
        burst=args.burst,
        seed=args.seed,
    )
    if args.single + args.ha + args.multiconnect == 0:
        args.single = 1
    try:
        for i in range(args.single):
            sim.add_instance(f"single-{i}")
        for i in range(args.ha):
            sim.add_instance(f"ha-{i}", "ha", masters=args.masters, coreapps=args.coreapps)
        for i in range(args.multiconnect):
            sim.add_instance(
                f"mc-{i}",
                "multiconnect",
                masters=args.masters,
                coreapps=args.coreapps,
                shards=args.shards,
            )
        if args.failover_every:
            for inst in sim.instances.values():
                if inst.topology != "single":
                    inst.schedule_failovers(args.failover_every)
    except ValueError as exc:
        parser.error(str(exc))
    return sim


async def _run(sim: Simulator, host: str, port: int, graph: GraphSimulator | None = None) -> int:
    """Bind, print the targets (with the port actually bound), serve until SIGTERM/SIGINT.

    With `graph`, the simulated Graph API shares the port and three more lines tell the
    exporter's `WA_CLOUD_*` settings."""
    app = sim.app()
    if graph is not None:
        graph.install(app)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        reason = exc.strerror or str(exc)
        print(f"whatsapp-api-simulator: cannot listen on {host}:{port}: {reason}", file=sys.stderr)
        return 1
    bound = runner.addresses[0][1] if runner.addresses else port
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
    if ":" in shown:
        shown = f"[{shown}]"
    base = f"http://{shown}:{bound}"
    print(",".join(f"{name}={sim.url(base, name)}" for name in sim.instances), flush=True)
    if graph is not None:
        print(describe(graph, base), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    return 0


def main(argv: list[str] | None = None) -> None:
    """Serve simulated deployments and print their target URLs on one line."""
    parser = build_parser()
    args = parser.parse_args(argv)
    sim = _build(args, parser)
    host, port = args.listen
    code = asyncio.run(_run(sim, host, port, graph_from_args(args)))
    if code:
        raise SystemExit(code)


if __name__ == "__main__":
    main()
