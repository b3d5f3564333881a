"""Entry point: settings, logging, then serve until SIGTERM.

``whatsapp-support-exporter check`` validates the settings and polls every target once instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import resource
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from aiohttp import web
from pydantic import SecretStr

from whatsapp_support_exporter import __version__
from whatsapp_support_exporter.cli.logs import setup_logging
from whatsapp_support_exporter.cli.settings import (
    PROG,
    SettingsError,
    account_warnings,
    load_settings,
    target_warnings,
    variable_warnings,
)
from whatsapp_support_exporter.fleet.config import ConfigError
from whatsapp_support_exporter.fleet.poller import Poller
from whatsapp_support_exporter.fleet.reload import Fleet
from whatsapp_support_exporter.fleet.settings import Settings, split_listen_address
from whatsapp_support_exporter.output.cloud_families import render_account
from whatsapp_support_exporter.output.families import render_target
from whatsapp_support_exporter.output.store import Store
from whatsapp_support_exporter.upstream.onprem.target import Credentials, Target
from whatsapp_support_exporter.web.app import create_app
from whatsapp_support_exporter.web.server import start_server

if TYPE_CHECKING:  # bcrypt and YAML are imported only when a web configuration file is given
    from whatsapp_support_exporter.web.webconfig import WebConfig

log = logging.getLogger("whatsapp_support_exporter")

# Seconds SIGTERM may take: polls in flight are cancelled, not awaited.
SHUTDOWN_TIMEOUT = 3.0
DEMO_LISTEN_ADDRESS = "127.0.0.1:10042"
# The demo simulator's fixed credentials (documented in docs/simulator.md, printed at start):
# public on purpose, so `check` and a configuration file can be tried against the running demo.
DEMO_CLUSTER_API_KEY = "demo-cluster-api-key"
DEMO_SINGLE_API_KEY = "demo-single-api-key"  # refused by the single instance: the login takes over
DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo-password"  # noqa: S105 - documented, guards a loopback simulator
DEMO_CLOUD_TOKEN = "demo-cloud-token"  # noqa: S105 - documented, the simulated Graph API's
# The demo polls its Cloud API account every minute: 120 of the simulated 200 calls an hour,
# and the account's scripted changes (every 10 minutes) show within a minute or two.
DEMO_CLOUD_INTERVAL = 60.0


def fail(message: str, code: int = 2) -> NoReturn:
    print(f"{PROG}: {message}", file=sys.stderr)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Console script: exit 2 with one line on bad settings, otherwise serve (or ``check``)."""
    if argv is None:
        argv = sys.argv[1:]
    if "--version" in argv:
        print(f"{PROG} {__version__}")
        return
    if argv[:1] == ["check"]:
        from whatsapp_support_exporter.cli.check import main as check_main

        sys.exit(check_main(argv[1:]))
    try:
        settings = load_settings(argv)
    except SettingsError as err:
        fail(str(err))
    web_config = _web_config(settings.web_config_file) if settings.web_config_file else None
    setup_logging(settings.log_level, settings.log_format)
    for warning in variable_warnings(os.environ):  # first, and in every mode
        log.warning(warning)
    _raise_file_limit()
    settle_gc()  # before the fleet exists: nothing a reload removes may be frozen
    store = Store(render_target, render_account)
    fleet = Fleet(settings, store)
    targets: list[Target] = []
    if not settings.demo:
        try:
            targets = fleet.initial()
        except ConfigError as err:
            fail(str(err))
        for warning in target_warnings(settings, targets) + account_warnings(fleet.accounts):
            log.warning(warning)
    run(serve(settings, web_config, store, fleet, targets))


def _web_config(path: Path) -> WebConfig:
    """The web configuration file (TLS, basic auth); its code is imported only when one is set."""
    from whatsapp_support_exporter.web.webconfig import WebConfigError, load_web_config

    try:
        return load_web_config(path)
    except WebConfigError as err:
        fail(f"invalid setting WA_WEB_CONFIG_FILE (--web.config.file): {err}")


def run(work: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop; a listen address that cannot be bound is one line and exit 1."""
    try:
        import uvloop

        runner: contextlib.AbstractContextManager[asyncio.Runner] = asyncio.Runner(
            loop_factory=uvloop.new_event_loop
        )
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.Runner()
    with runner as loop_runner:
        try:
            loop_runner.run(work)
        except ListenError as err:
            fail(str(err), 1)


class ListenError(Exception):
    """The listen address cannot be bound (taken, or not ours)."""


async def serve(
    settings: Settings,
    web_config: WebConfig | None,
    store: Store,
    fleet: Fleet,
    targets: list[Target],
) -> None:
    """Run the exporter (and in demo mode the simulator) until SIGTERM or SIGINT."""
    cleanups = []
    if settings.demo:
        settings, targets, sim_runner = await start_demo_simulator(settings)
        fleet.settings = settings
        fleet.accounts = settings.env_accounts()
        fleet.demo()
        cleanups.append(sim_runner)
    poller = Poller(settings, store, targets, fleet.accounts)
    fleet.poller = poller
    middlewares = []
    if web_config and web_config.users:
        from whatsapp_support_exporter.web.webconfig import PROBE_PATHS, basic_auth_middleware

        middlewares.append(basic_auth_middleware(web_config.users, PROBE_PATHS))
    watch = settings.config_file is not None and not settings.demo
    background = [fleet.watch] if watch else []
    if watch or len(targets) > 1:  # a fleet, whose peaks come and go (a lone target has none)
        background.append(give_back_memory)
    app = create_app(
        store,
        poller=poller,
        telemetry_path=settings.telemetry_path,
        middlewares=middlewares,
        reload=fleet.reload if settings.web_enable_lifecycle and not settings.demo else None,
        reload_status=lambda: _reload_text(fleet),
        background=background,
    )
    if web_config and web_config.headers:
        from whatsapp_support_exporter.web.webconfig import headers_hook

        app.on_response_prepare.append(headers_hook(web_config.headers))
    host, port = split_listen_address(settings.listen_address)
    ssl_context = web_config.ssl_context if web_config else None
    try:
        runner = await start_server(
            app, host or None, port, ssl_context, shutdown_timeout=SHUTDOWN_TIMEOUT
        )
    except OSError as err:
        for sim in cleanups:
            await sim.cleanup()
        raise ListenError(err.strerror or str(err)) from None
    log.info(
        "listening",
        extra={
            "address": settings.listen_address,
            "tls": ssl_context is not None,
            "targets": len(targets),
            "accounts": len(fleet.accounts),
            "shard": settings.shard,
            "total_shards": settings.total_shards,
            "version": __version__,
        },
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[str | None]] = set()

    def on_sighup() -> None:
        if settings.demo:
            log.info("SIGHUP ignored: the demo has no configuration to reload")
            return
        task = asyncio.create_task(fleet.reload("SIGHUP"))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_sighup)
    await stop.wait()
    log.info("shutting down")
    await runner.cleanup()
    for sim_runner in cleanups:
        await sim_runner.cleanup()


def _reload_text(fleet: Fleet) -> str:
    status = fleet.status
    if status.ok:
        return "loaded" if fleet.settings.config_file or not fleet.settings.demo else "demo"
    return f"the last reload failed, the previous configuration runs: {status.error}"


async def start_demo_simulator(
    settings: Settings,
) -> tuple[Settings, list[Target], web.AppRunner]:
    """A multiconnect cluster and a single instance on a loopback port, with an auth each, and
    beside them a simulated Graph API with one Cloud API account.

    The cluster takes an API key; the single instance takes only login tokens on /v1/support
    (as some builds do), so the demo shows the API key being tried first and the login taking
    over, and a fleet with two credential sets. The account's numbers show every state, one
    still on ON_PREMISE, and change with the clock (a migration, a quality rating that drops
    and recovers, a number flagged then restored); it comes back as the returned settings'
    WA_CLOUD_* values, as an operator would set them.
    """
    from whatsapp_api_simulator.cloud import GraphSimulator  # only the demo needs them
    from whatsapp_api_simulator.onprem import Simulator

    ignored = [
        name
        for name, present in (
            ("WA_TARGETS/--target", bool(settings.targets)),
            ("--config.file", settings.config_file is not None),
            ("WA_CLOUD_WABA_IDS/--cloud.waba-id", bool(settings.cloud_waba_ids)),
        )
        if present
    ]
    if ignored:
        log.warning("demo: ignoring " + ", ".join(ignored) + "; it polls its own simulator")
    sim = Simulator(api_key=DEMO_CLUSTER_API_KEY)  # the cluster takes the key only
    cluster = sim.add_instance("cluster", "multiconnect", masters=2, coreapps=4, shards=4)
    cluster.schedule_failovers(300)
    single = sim.add_instance(
        "single",
        "single",
        api_key=DEMO_SINGLE_API_KEY,
        username=DEMO_USERNAME,
        password=DEMO_PASSWORD,
    )
    single.faults.reject_api_key = True
    graph = GraphSimulator(token=DEMO_CLOUD_TOKEN)
    demo_account = graph.add_demo_account(label="demo")
    app = sim.app()
    graph.install(app)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    base = f"http://127.0.0.1:{port}"
    tls = settings.tls()
    targets = [
        Target.at(
            sim.url(base, "cluster"),
            "cluster",
            Credentials(api_key=SecretStr(DEMO_CLUSTER_API_KEY)),
            tls,
        ),
        Target.at(
            sim.url(base, "single"),
            "single",
            Credentials(
                api_key=SecretStr(DEMO_SINGLE_API_KEY),
                username=DEMO_USERNAME,
                password=SecretStr(DEMO_PASSWORD),
            ),
            tls,
        ),
    ]
    log.info("demo: simulated WhatsApp Business API started", extra={"url": base})
    print(demo_config(base, demo_account.waba_id), file=sys.stderr)
    update: dict[str, Any] = {
        "targets": [],
        "cloud_waba_ids": [("demo", demo_account.waba_id)],
        "cloud_token": SecretStr(DEMO_CLOUD_TOKEN),
        "cloud_token_file": None,
        "cloud_graph_url": base,
        "cloud_interval": DEMO_CLOUD_INTERVAL,
    }
    if "listen_address" not in settings.model_fields_set:
        update["listen_address"] = DEMO_LISTEN_ADDRESS
    return settings.model_copy(update=update), targets, runner


def demo_config(base: str, waba_id: str = "") -> str:
    """The demo's fleet as a configuration file says it, ready to save and give to ``check``.

    The credentials are the fixed, documented demo ones: the simulator listens on loopback only
    and guards nothing, so showing them costs nothing and lets a user try ``check`` and a
    configuration file against the running demo. With ``waba_id``, the Cloud API account too.
    """
    cloud = (
        f"""
cloud:
  graph_url: {base}
  token: {DEMO_CLOUD_TOKEN}
  interval: 1m
  accounts:
    - {{name: demo, waba_id: "{waba_id}"}}"""
        if waba_id
        else ""
    )
    return f"""# The demo's simulator as a configuration file says it (fixed demo credentials,
# docs/simulator.md). Save these lines as demo.yml and, while the demo runs, try:
#   whatsapp-support-exporter check --config.file demo.yml
auths:
  cluster-key: {{api_key: {DEMO_CLUSTER_API_KEY}}}
  single-login:
    api_key: {DEMO_SINGLE_API_KEY}
    username: {DEMO_USERNAME}
    password: {DEMO_PASSWORD}{cloud}
targets:
  - {{name: cluster, url: {base}/cluster, auth: cluster-key}}
  - {{name: single, url: {base}/single, auth: single-login}}"""


# Allocations between collections of the youngest generation (Python's default is 700).
GC_GEN0_THRESHOLD = 10_000


def settle_gc() -> None:
    """Keep the garbage collector off what lives as long as the process.

    Called once the settings are read and before the fleet is built: what exists then (modules,
    settings, logging) lives as long as the process and is moved out of the collector's reach;
    nothing of a target is, so a target a reload removes is freed whole (freezing the running
    fleet pinned every removed target that the collector would have had to free). Young objects
    are collected every GC_GEN0_THRESHOLD allocations: with the defaults, a fleet's per-poll
    objects set off collections over every target's state that took a quarter of the CPU at
    10,000 targets (bench/gc_settings.py, docs/benchmarks-fleet.md). A cycle among frozen
    objects is never collected (they are never examined again), so what is frozen must be what
    lives as long as the process; a target's objects hold no reference cycle, so they go as soon
    as the last reference does, frozen or not.
    """
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


# How often memory freed since is handed back to the system.
TRIM_SECONDS = 30.0


async def give_back_memory(every: float = TRIM_SECONDS) -> None:
    """Hand the heap memory freed since the last time back to the system (glibc's malloc_trim).

    glibc keeps freed heap pages for reuse, so after a passing peak (answers read up to the size
    cap, an uncompressed /metrics held by a slow reader, a reload) the resident size stays at the
    peak and creeps up with the next one: over a soak it looks like a leak and counts against a
    container's memory limit (docs/benchmarks.md, "Soak"). A trim takes well under a
    millisecond. Nothing to do where the C library has no malloc_trim (musl).
    """
    import ctypes  # only a fleet pays for it

    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is None:
        return
    while True:
        await asyncio.sleep(every)
        trim(0)


def _raise_file_limit() -> None:
    """A fleet keeps one keep-alive connection per target: lift the soft descriptor limit."""
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
            resource.setrlimit(
                resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard)
            )


if __name__ == "__main__":
    main()
