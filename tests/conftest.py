"""Shared fixtures: a simulated WhatsApp API on loopback, settings, hand-driven poll harnesses.

Tests drive polls themselves (``Harness.poll``) instead of waiting for the schedule, and move
time by hand where they can (``FakeClock``); the few tests of the schedule itself (backoff, the
budget, staleness) run it for real with intervals of milliseconds, and wait at most a few
seconds.
"""

from __future__ import annotations

import asyncio
import base64
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson
import pytest
import trustme
import uvloop
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from tests.cloud_hostile_kit import Exporter
from tests.cloudgraph import FakeGraph, serve_graph
from tests.dashboard_json import Dashboard, Panel, load_dashboard, panels_of
from tests.hostile import PLANTED_ENV
from tests.metagraph import MetaGraph, serve_meta_graph
from whatsapp_api_simulator.onprem import Simulator
from whatsapp_support_exporter.fleet.poller import TargetPoller, ssl_for
from whatsapp_support_exporter.fleet.schedule import Budget
from whatsapp_support_exporter.fleet.settings import Settings
from whatsapp_support_exporter.output.cloud_families import render_account
from whatsapp_support_exporter.output.exposition import Exposition
from whatsapp_support_exporter.output.families import METRIC_NAMES, render_target
from whatsapp_support_exporter.output.snapshot import TargetSnapshot
from whatsapp_support_exporter.output.store import Store
from whatsapp_support_exporter.upstream.http import new_session
from whatsapp_support_exporter.upstream.onprem.target import Credentials, Target
from whatsapp_support_exporter.web.app import create_app

# The contract's data series of a target: everything but whatsapp_up and whatsapp_exporter_*
# (and whatsapp_target_info, from the configuration); withdrawn once the data is stale. The
# Cloud API's series are about accounts, not targets.
DATA_FAMILIES = tuple(
    name
    for name in METRIC_NAMES
    if name not in ("whatsapp_up", "whatsapp_target_info")
    and not name.startswith(("whatsapp_exporter_", "whatsapp_cloud_"))
)

API_KEY = "test-api-key-0123456789"
USERNAME = "monitor"
PASSWORD = "pa55-w0rd-for-tests"
SECRETS = (API_KEY, PASSWORD)
T = TypeVar("T")


class FakeClock:
    """Wall time that a test moves by hand."""

    def __init__(self, now: float = 1_780_000_000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []  # the waits asked of ``sleep``, in order

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        """A wait of the poll schedule (``Poller(sleep=...)``): recorded and passed at once."""
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


# Modules whose tests start real programs: Prometheus and promtool (alerts, rules_lint,
# scrape_config, prometheus_e2e), kubectl (kubernetes), hadolint and a venv (docker), yamllint
# and the tools' checks (yamllint, tools), systemd-analyze (host_installs), the exporter's own
# process (cli, check, demo, cloud_hostile_setup). Marked
# `slow`, so that `-m "not slow"` is an inner loop of seconds; CI runs everything.
SLOW_MODULES = frozenset(
    {
        "test_alerts",
        "test_check",
        "test_cli",
        "test_cloud_hostile_setup",
        "test_demo",
        "test_docker",
        "test_host_installs",
        "test_kubernetes_central_sharded",
        "test_kubernetes_kits",
        "test_kubernetes_overlays",
        "test_kubernetes_sidecar",
        "test_prometheus_e2e",
        "test_rules_lint",
        "test_scrape_config",
        "test_tools",
        "test_yamllint",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests of ``SLOW_MODULES`` ``slow`` (a renamed module fails loudly here)."""
    missing = sorted(m for m in SLOW_MODULES if not (Path(__file__).parent / f"{m}.py").exists())
    if missing:
        raise pytest.UsageError(f"SLOW_MODULES names no test module: {', '.join(missing)}")
    for item in items:
        if item.path.stem in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Async tests run on uvloop, the loop the exporter runs on; the listener's own tests also
    on asyncio's loop (its transports are other classes: a type check passing on one can fail
    on the other)."""
    if item.path.name == "test_server.py":
        return {"uvloop": uvloop.new_event_loop, "asyncio": asyncio.new_event_loop}
    return {"uvloop": uvloop.new_event_loop}


def make_settings(**overrides: Any) -> Settings:
    """Settings as a test wants them: fast, and with targets supplied by the test."""
    values: dict[str, Any] = {
        "targets": ["placeholder=http://127.0.0.1:1"],
        "poll_interval": 0.05,
        "poll_timeout": 1.0,
        "max_backoff": 0.2,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def sim() -> Simulator:
    """The simulator every exporter test polls, with a secret planted in its `env`."""
    return Simulator(api_key=API_KEY, username=USERNAME, password=PASSWORD, env=PLANTED_ENV)


@pytest.fixture
async def sim_base(sim: Simulator) -> AsyncIterator[str]:
    """The simulator served on a loopback port: its base URL."""
    server = TestServer(sim.app(), host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


class Harness:
    """One target's poller, client and store, polled by hand."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: Settings,
        target: Target,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.store = Store(render_target)
        self.exposition = Exposition(self.store)
        self.poller = TargetPoller(
            target,
            session,
            self.store,
            settings,
            Budget(settings.max_concurrency),
            ssl_context=ssl_for(target.tls),
            clock=clock,
            rng=random.Random(1),
        )
        self.client = self.poller.client

    @property
    def snapshot(self) -> TargetSnapshot:
        return self.poller.snapshot

    async def poll(self) -> float:
        """One poll; returns the delay the poller would wait before the next."""
        return await self.poller.poll_once()

    def metrics(self) -> str:
        return self.exposition.render().decode()


# ``harness("instance-name", api_key=..., username=..., **settings)`` -> Harness
HarnessFactory = Callable[..., Harness]


def series(text: str, name: str) -> dict[str, float]:
    """Samples of one metric in an exposition, as {labels: value}."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, _, value = line.rpartition(" ")
            out[labels[len(name) :]] = float(value)
    return out


MiB = 1024 * 1024


def poll_errors(text: str, target: str = "wa") -> dict[str, float]:
    """whatsapp_exporter_poll_errors_total of one target as {reason: count}."""
    out = {}
    for labels, value in series(text, "whatsapp_exporter_poll_errors_total").items():
        if f'target="{target}"' in labels:
            out[labels.split('reason="')[1].rstrip('"}')] = value
    return out


def up(text: str, target: str = "wa") -> float:
    return series(text, "whatsapp_up")[f'{{target="{target}"}}']


def has_data(text: str, target: str = "wa") -> bool:
    """The target's container series are served (they go once its data is stale)."""
    return f'whatsapp_socket_connected{{target="{target}"' in text


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[Any], Awaitable[str]]]:
    """Factory: serve one aiohttp handler on every path; returns the base URL."""
    servers: list[TestServer] = []

    async def start(handler: Any) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def harness(sim_base: str) -> AsyncIterator[HarnessFactory]:
    """Factory: ``harness("instance-name", api_key=..., username=..., **settings)``."""
    sessions: list[aiohttp.ClientSession] = []
    pollers: list[TargetPoller] = []

    def make(
        instance: str,
        *,
        api_key: str | None = API_KEY,
        username: str | None = None,
        password: str | None = None,
        clock: Callable[[], float] | None = None,
        url: str | None = None,
        **overrides: Any,
    ) -> Harness:
        settings = make_settings(**overrides)
        session = new_session(settings.max_concurrency, 5.0)
        sessions.append(session)
        credentials = Credentials(
            api_key=SecretStr(api_key) if api_key else None,
            username=username,
            password=SecretStr(password) if password else None,
        )
        target = Target(
            name=instance,
            url=url or f"{sim_base}/{instance}",
            credentials=credentials,
            tls=settings.tls(),
        )
        h = Harness(session, settings, target, clock or _wall_clock)
        pollers.append(h.poller)
        return h

    yield make
    for poller in pollers:
        await poller.stop()
    for session in sessions:
        await session.close()


def _wall_clock() -> float:
    return time.time()


async def wait_for(predicate: Callable[[], bool], within: float = 3.0) -> None:
    """Wait (in 10 ms steps) until the predicate holds; fail the test after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def wait_until(check: Callable[[], T | None], within: float = 10.0, what: str = "condition") -> T:
    """Wait for a real process (Prometheus, the exporter's own process) to show something:
    poll ``check`` every 50 ms until it returns something truthy; an OSError counts as not yet."""
    deadline = time.monotonic() + within
    while True:
        try:
            result = check()
            if result:
                return result
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {within}s")
        time.sleep(0.05)


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """A certificate authority made at test time."""
    return trustme.CA()


def exporter_app_factory(
    settings: Settings,
) -> tuple[web.Application, Store]:
    """The full web application with its poller, as ``__main__`` builds it."""
    from whatsapp_support_exporter.fleet.config import load_targets
    from whatsapp_support_exporter.fleet.poller import Poller

    store = Store(render_target)
    poller = Poller(settings, store, load_targets(settings))
    return create_app(store, poller=poller, telemetry_path=settings.telemetry_path), store


@pytest.fixture
def require_tool() -> None:
    """promtool and prometheus are part of the suite (the README's test command installs them):
    a missing one fails, it never skips."""
    import shutil

    for tool in ("promtool", "prometheus"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (Debian package prometheus)")


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    """A small fake Graph API (tests/cloudgraph.py) on a loopback port."""
    fake, server = await serve_graph()
    yield fake
    await server.close()


@pytest.fixture
async def meta() -> AsyncIterator[MetaGraph]:
    """An independent fake of the Graph API (tests/metagraph.py) on a loopback port."""
    fake, server = await serve_meta_graph()
    yield fake
    await server.close()


@pytest.fixture
async def exporter() -> AsyncIterator[Exporter]:
    """The exporter's web app in-process; the test adds accounts and polls them by hand."""
    store = Store(render_target, render_account)
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(store), host="127.0.0.1"))
    await client.start_server()
    made = Exporter(client, store, make_settings)
    yield made
    await made.close()
    await client.close()


@pytest.fixture(scope="session")
def built_kits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Every kustomize kit and example, and a user's own overlays, built once by kubectl."""
    from tests.kits import build_every_kit  # kubernetes-validate loads slowly: kit tests only

    return build_every_kit(tmp_path_factory.mktemp("kits"))


# ------------------------------------------------- the On-Premises simulator's own tests

SIM_START = 1_750_000_000.0
SIM_KEY = "test-api-key-0123456789"
SIM_APIKEY = {"Authorization": f"Apikey {SIM_KEY}"}

Client = TestClient[web.Request, web.Application]


@pytest.fixture
def onprem_clock() -> FakeClock:
    return FakeClock(SIM_START)


@pytest.fixture
def onprem_sim(onprem_clock: FakeClock) -> Simulator:
    """A simulator on the fake clock, taking `SIM_KEY` and logins with password `s3cret-pass`."""
    return Simulator(api_key=SIM_KEY, password="s3cret-pass", clock=onprem_clock, seed=7)


@pytest.fixture
async def onprem_client(aiohttp_client: Any, onprem_sim: Simulator) -> Client:
    """`onprem_sim` serving a single instance `one`, a multiconnect `mc` and an HA `ha`."""
    onprem_sim.add_instance("one")
    onprem_sim.add_instance("mc", "multiconnect", masters=2, coreapps=5, shards=4)
    onprem_sim.add_instance("ha", "ha", masters=3, coreapps=3)
    c: Client = await aiohttp_client(onprem_sim.app())
    return c


async def get_json(client: Client, path: str, status: int = 200, **kw: Any) -> Any:
    """GET with the API key unless told otherwise; the status must be `status`."""
    kw.setdefault("headers", SIM_APIKEY)
    resp = await client.get(path, **kw)
    assert resp.status == status, await resp.text()
    return orjson.loads(await resp.read())


def basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def assert_error_envelope(doc: Any, code: int) -> None:
    assert doc["errors"][0]["code"] == code
    assert doc["errors"][0]["title"]
    assert doc["meta"]["api_status"] == "stable"


def gateways(doc: Any) -> dict[str, tuple[str, str]]:
    """{key: (role, gateway_status)} of a keyed health answer."""
    return {k: (v["role"], v["gateway_status"]) for k, v in doc["health"].items()}


# ---------------------------------------------------------------- the Grafana dashboard


@pytest.fixture(scope="module")
def dashboard() -> Dashboard:
    """The committed Grafana dashboard, read once per test module."""
    return load_dashboard()


@pytest.fixture(scope="module")
def panels(dashboard: Dashboard) -> dict[str, Panel]:
    """The dashboard's panels (rows' nested panels too) by title."""
    return {p["title"]: p for p in panels_of(dashboard)}
