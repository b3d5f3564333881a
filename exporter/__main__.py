"""Entry point: settings, logging, then serve until SIGTERM (``python -m exporter``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import secrets
import signal
import sys

from aiohttp import web
from pydantic import SecretStr

from exporter import __version__
from exporter.logs import setup_logging
from exporter.poller import Poller
from exporter.settings import Settings, SettingsError, Target, load_settings, split_listen_address
from exporter.store import SnapshotStore
from exporter.web import create_app
from exporter.webconfig import WebConfig, WebConfigError, basic_auth_middleware, load_web_config

log = logging.getLogger("exporter")

# Seconds SIGTERM may take: polls in flight are cancelled, not awaited.
SHUTDOWN_TIMEOUT = 3.0
DEMO_USERNAME = "demo"


def main(argv: list[str] | None = None) -> None:
    """Console script: exit 2 with one line on bad settings, otherwise serve."""
    if argv is None:
        argv = sys.argv[1:]
    if "--version" in argv:
        print(f"whatsapp-support-exporter {__version__}")
        return
    try:
        settings = load_settings(argv)
        web_config = load_web_config(settings.web_config_file) if settings.web_config_file else None
    except SettingsError as err:
        print(f"whatsapp-support-exporter: {err}", file=sys.stderr)
        sys.exit(2)
    except WebConfigError as err:
        print(
            "whatsapp-support-exporter: invalid setting WA_WEB_CONFIG_FILE"
            f" (--web.config.file): {err}",
            file=sys.stderr,
        )
        sys.exit(2)
    setup_logging(settings.log_level, settings.log_format)
    _raise_file_limit()
    try:
        import uvloop

        runner: contextlib.AbstractContextManager[asyncio.Runner] = asyncio.Runner(
            loop_factory=uvloop.new_event_loop
        )
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.Runner()
    with runner as loop_runner:
        try:
            loop_runner.run(serve(settings, web_config))
        except OSError as err:
            log.error("cannot serve", extra={"address": settings.listen_address, "error": str(err)})
            sys.exit(1)


async def serve(settings: Settings, web_config: WebConfig | None) -> None:
    """Run the exporter (and in demo mode the simulator) until SIGTERM or SIGINT."""
    cleanups = []
    if settings.demo:
        settings, sim_runner = await start_demo_simulator(settings)
        cleanups.append(sim_runner)
    store = SnapshotStore(with_logins=settings.username is not None)
    poller = Poller(settings, store, settings.targets)
    middlewares = (
        [basic_auth_middleware(web_config.users)] if web_config and web_config.users else []
    )
    app = create_app(
        store, poller=poller, telemetry_path=settings.telemetry_path, middlewares=middlewares
    )
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    host, port = split_listen_address(settings.listen_address)
    ssl_context = web_config.ssl_context if web_config else None
    site = web.TCPSite(runner, host or None, port, ssl_context=ssl_context, reuse_address=True)
    await site.start()
    log.info(
        "listening",
        extra={
            "address": settings.listen_address,
            "tls": ssl_context is not None,
            "targets": len(settings.targets),
            "version": __version__,
        },
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await runner.cleanup()
    for sim_runner in cleanups:
        await sim_runner.cleanup()


async def start_demo_simulator(settings: Settings) -> tuple[Settings, web.AppRunner]:
    """A multiconnect cluster and a single instance on a loopback port, and settings for them.

    The single instance accepts only login tokens on /v1/support (as some builds do), so the
    demo shows the API key being tried first and the login taking over.
    """
    from exporter.simulator import Simulator  # only the demo needs it

    api_key = secrets.token_urlsafe(24)
    password = secrets.token_urlsafe(16)
    sim = Simulator(api_key=api_key, username=DEMO_USERNAME, password=password)
    sim.add_instance("cluster", "multiconnect", masters=2, coreapps=4, shards=4)
    single = sim.add_instance("single", "single")
    single.faults.reject_api_key = True
    runner = web.AppRunner(sim.app(), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    base = f"http://127.0.0.1:{port}"
    targets = [Target(name=name, url=sim.url(base, name)) for name in ("cluster", "single")]
    log.info("demo: simulated WhatsApp Business API started", extra={"url": base})
    demo = settings.model_copy(
        update={
            "targets": targets,
            "api_key": SecretStr(api_key),
            "username": DEMO_USERNAME,
            "password": SecretStr(password),
        }
    )
    return demo, runner


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
