"""The landing page as an operator opens it: each target's containers with what ``check`` prints
(build expiry, socket, least free space, role, gateway), failing ones first with a state word and
a colour, escaped, static, and rendered at most once a second however often it is asked for."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from tests.conftest import (
    API_KEY,
    PASSWORD,
    USERNAME,
    FakeClock,
    exporter_app_factory,
    make_settings,
    wait_for,
)
from whatsapp_api_simulator.onprem import Simulator
from whatsapp_support_exporter.cli.check import rows as check_rows
from whatsapp_support_exporter.output import status
from whatsapp_support_exporter.output.families import render_target
from whatsapp_support_exporter.output.snapshot import EndpointState, TargetSnapshot
from whatsapp_support_exporter.output.status import STATES
from whatsapp_support_exporter.output.store import Store
from whatsapp_support_exporter.upstream.cloud.model import PhoneNumber, Waba
from whatsapp_support_exporter.upstream.errors import PollError, Reason
from whatsapp_support_exporter.upstream.onprem.client import Answer
from whatsapp_support_exporter.upstream.onprem.support import (
    Support,
    parse_health,
    parse_support,
)
from whatsapp_support_exporter.upstream.onprem.target import Credentials, Target
from whatsapp_support_exporter.web.app import LANDING, create_app

NOW = 1_780_000_000.0
DAY = 86400
GIB = 1024**3


def when(days: float) -> str:
    return datetime.fromtimestamp(NOW + days * DAY, UTC).isoformat()


def cluster_body(expires_in_days: float) -> bytes:
    """A multiconnect cluster: a Master owning the control shard, two Coreapps, a spare."""
    expiry = when(expires_in_days)
    return json.dumps(
        {
            "support": {
                "master-0:aaa": {
                    "role": "primary_master",
                    "shards": [[-1, -1]],
                    "socket_conn": "DN",  # a Master's socket is not used: no problem
                    "expire_timestamp": expiry,
                    "free_space_data": 50 * GIB,
                    "free_space_logs": 7 * GIB,
                },
                "core-0:bbb": {
                    "role": "coreapp",
                    "shards": [[0, 0]],
                    "socket_conn": "UP",
                    "expire_timestamp": expiry,
                    "free_space_data": 30 * GIB,
                },
                "core-1:ccc": {
                    "role": "coreapp",
                    "shards": [[1, 1]],
                    "socket_conn": "UP",
                    "expire_timestamp": expiry,
                    "free_space_media_incoming": 1.5 * GIB,  # under 2 GiB: a warning
                },
                "spare-0:ddd": {"role": "coreapp", "shards": [], "socket_conn": "DN"},
            }
        }
    ).encode()


CLUSTER_HEALTH = json.dumps(
    {
        "health": {
            "master-0:aaa": {"gateway_status": "connected", "role": "primary_master"},
            "core-0:bbb": {"gateway_status": "disconnected", "role": "coreapp"},
            "core-1:ccc": {"gateway_status": "connected", "role": "coreapp"},
            "spare-0:ddd": {"gateway_status": "disconnected", "role": "coreapp"},
        }
    }
).encode()


def single_body(expires_in_days: float, socket: str = "UP") -> bytes:
    return json.dumps(
        {
            "support": {
                "socket_conn": socket,
                "expire_timestamp": when(expires_in_days),
                "free_space_data": 20 * GIB,
            }
        }
    ).encode()


def answered(name: str, support: Support, **fields: Any) -> TargetSnapshot:
    return TargetSnapshot(
        name=name,
        url=f"https://{name}.example:9090",
        up=True,
        support=support,
        polls=3,
        last_success=NOW - 12,
        received_at=NOW - 12,
        **fields,
    )


class Tables(HTMLParser):
    """Every table row of the page as (the tr's class, its cells' text)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append((dict(attrs).get("class") or "", []))
        elif tag in ("td", "th"):
            self._cell = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1][1].append("".join(self._cell))
            self._cell = None


def table_rows(page: str) -> list[tuple[str, list[str]]]:
    parser = Tables()
    parser.feed(page)
    return parser.rows


def fleet_store() -> Store:
    """Five targets, one of each state, added best first."""
    store = Store(render_target)
    store.update(answered("a-fine", parse_support(single_body(40))))
    store.update(TargetSnapshot(name="b-new", url="https://b-new.example:9090"))
    store.update(
        TargetSnapshot(
            name="c-<b>down</b>",
            url="https://c.example:9090",
            polls=2,
            last_error=Reason.UNAVAILABLE,
            last_error_detail="/v1/support answered HTTP 503 <Service Unavailable>",
        )
    )
    store.update(
        answered(
            "d-cluster",
            parse_support(cluster_body(40)),
            health=parse_health(CLUSTER_HEALTH),
            endpoints={"health": EndpointState(True), "shards": EndpointState(True)},
        )
    )
    store.update(answered("e-expiring", parse_support(single_body(10))))
    return store


async def test_the_page_shows_each_containers_expiry_socket_free_space_role_and_gateway(
    aiohttp_client: Any,
) -> None:
    store = fleet_store()
    client = await aiohttp_client(create_app(store, clock=FakeClock(NOW)))
    rows = table_rows(await (await client.get("/")).text())
    header = rows[0][1]
    assert header[:9] == [
        "target",
        "container",
        "state",
        "expires in",
        "socket",
        "least free",
        "role",
        "gateway",
        "notes",
    ]
    by_part = {cells[1]: cells for _, cells in rows[1:] if cells[0] == "d-cluster"}
    master = by_part["master-0:aaa"]
    assert master[2:8] == ["up", "40.0 days", "DN", "7.0 GiB", "primary_master", "connected"]
    core0 = by_part["core-0:bbb"]  # owns a shard, gateway disconnected
    assert core0[2] == "critical" and core0[7] == "disconnected"
    assert "gateway disconnected" in core0[8]
    core1 = by_part["core-1:ccc"]
    assert core1[2] == "warning" and core1[5] == "1.5 GiB" and "media_incoming" in core1[8]
    assert by_part["spare-0:ddd"][2] == "up"  # a spare owning nothing need not be connected
    (single,) = [cells for _, cells in rows if cells[0] == "a-fine"]
    assert single[1:6] == ["", "up", "40.0 days", "UP", "20.0 GiB"]
    assert single[9:11] == ["12s ago", "3"]


async def test_the_page_and_check_print_the_same_row_for_the_same_answer(
    aiohttp_client: Any,
) -> None:
    support, health = parse_support(cluster_body(2)), parse_health(CLUSTER_HEALTH)
    target = Target(
        "d-cluster",
        "https://d.example:9090",
        Credentials(api_key=SecretStr(API_KEY)),
        make_settings().tls(),
    )
    printed = check_rows([(target, Answer(support, NOW, health))], NOW)
    store = Store(render_target)
    store.update(answered("d-cluster", support, health=health))
    client = await aiohttp_client(create_app(store, clock=FakeClock(NOW)))
    shown = [cells[:9] for _, cells in table_rows(await (await client.get("/")).text())[1:]]
    assert sorted(shown) == sorted(list(row.line) for row in printed)
    # two days left: every container with an expiry is critical, on the page as in check
    assert all(row.state == "critical" for row in printed if row.part != "spare-0:ddd")


async def test_failing_targets_come_first_each_with_its_state_as_a_word_and_a_colour(
    aiohttp_client: Any,
) -> None:
    client = await aiohttp_client(create_app(fleet_store(), clock=FakeClock(NOW)))
    page = await (await client.get("/")).text()
    rows = table_rows(page)[1:]
    names = list(dict.fromkeys(cells[0] for _, cells in rows))
    assert names == ["c-<b>down</b>", "d-cluster", "e-expiring", "b-new", "a-fine"]
    # within a target, its worst containers first
    assert [cells[2] for _, cells in rows if cells[0] == "d-cluster"] == [
        "critical",
        "warning",
        "up",
        "up",
    ]
    for css_class, cells in rows:
        assert css_class == cells[2] and cells[2] in STATES  # the word, and the class colouring it
    for state in STATES:
        assert f"tr.{state}" in page.split("</style>")[0]  # every state has a colour
    assert "1 down, 1 critical, 2 warning, 1 starting, 3 up" in page
    (down,) = [cells for _, cells in rows if cells[2] == "down"]
    assert down[8] == "unavailable: /v1/support answered HTTP 503 <Service Unavailable>"


async def test_the_page_escapes_what_the_upstream_and_config_say_and_loads_nothing(
    aiohttp_client: Any,
) -> None:
    client = await aiohttp_client(create_app(fleet_store(), clock=FakeClock(NOW)))
    page = await (await client.get("/")).text()
    assert "c-&lt;b&gt;down&lt;/b&gt;" in page and "<b>" not in page
    assert "&lt;Service Unavailable&gt;" in page
    lowered = page.lower()
    assert "<script" not in lowered and "src=" not in lowered and "<link" not in lowered
    assert "@import" not in lowered and "url(" not in lowered
    hrefs = [part.split('"', 1)[0] for part in page.split('href="')[1:]]
    assert hrefs and all(href.startswith("/") for href in hrefs)  # our own endpoints only


async def test_the_page_is_rendered_at_most_once_a_second_however_often_it_is_asked(
    aiohttp_client: Any,
) -> None:
    clock = FakeClock(NOW)
    store = fleet_store()
    app = create_app(store, clock=clock)
    client = await aiohttp_client(app)
    first = await (await client.get("/")).read()
    store.update(answered("f-added", parse_support(single_body(40))))
    for _ in range(5):
        clock.advance(0.19)
        assert await (await client.get("/")).read() == first  # the change waits
    assert app[LANDING]["renders"] == 1
    clock.advance(0.05)  # one second after the render
    page = await (await client.get("/")).text()
    assert "f-added" in page and app[LANDING]["renders"] == 2
    clock.advance(-30)  # a wall clock stepped back does not freeze the page
    await client.get("/")
    assert app[LANDING]["renders"] == 3


async def test_the_page_of_a_running_exporter_shows_no_credential(
    aiohttp_client: Any, sim: Simulator, sim_base: str
) -> None:
    sim.add_instance("good", "single").socket_conn = "UP"  # no clock-driven flap
    login = sim.add_instance("login", "single")
    login.socket_conn, login.faults.reject_api_key = "UP", True  # the key fails, the login works
    sim.add_instance("broken", "single").faults.status = 500
    settings = make_settings(
        targets=[f"good={sim_base}/good", f"login={sim_base}/login", f"broken={sim_base}/broken"],
        api_key=API_KEY,
        username=USERNAME,
        password=PASSWORD,
    )
    app, store = exporter_app_factory(settings)
    client = await aiohttp_client(app)
    await wait_for(
        lambda: (
            store.snapshots["good"].up
            and store.snapshots["login"].up
            and store.snapshots["broken"].polls > 0
        )
    )
    page = await (await client.get("/")).text()
    states = {cells[0]: cells[2] for _, cells in table_rows(page)[1:]}
    assert states == {"good": "up", "login": "up", "broken": "down"}
    assert "http: /v1/support answered HTTP 500" in page
    assert API_KEY not in page and PASSWORD not in page


def test_a_poll_error_is_one_down_row_naming_the_reason() -> None:
    target = Target("x", "https://x.example:9090", Credentials(), make_settings().tls())
    (row,) = check_rows([(target, PollError(Reason.TIMEOUT, "no answer within 10s"))], NOW)
    assert row.state == "down" and row.line[-1] == "timeout: no answer within 10s"


def test_the_states_use_the_alert_rules_thresholds() -> None:
    """What the page calls critical or warning is what pages or warns an operator."""
    alerts = (Path(__file__).parent.parent / "deploy" / "prometheus" / "alerts.yml").read_text()

    def rule(name: str) -> str:
        return alerts.split(f"alert: {name}\n")[1].split("annotations:")[0]

    assert f"< {status.EXPIRY_WARNING_DAYS} * 86400" in rule("WhatsAppBuildExpiresSoon")
    assert f"< {status.EXPIRY_CRITICAL_DAYS} * 86400" in rule("WhatsAppBuildExpiresVerySoon")
    assert "severity: critical" in rule("WhatsAppBuildExpiresVerySoon")
    assert status.LOW_FREE_BYTES == 2 * 1024**3
    assert "< 2 * 1024 * 1024 * 1024" in rule("WhatsAppFreeSpaceLow")


def test_an_account_row_is_critical_when_an_alert_pages_and_sets_a_deleted_number_apart() -> None:
    """The page and check call critical what the Cloud alerts page for: a number still on
    ON_PREMISE, but not a number DELETED on purpose, which only gets a note."""
    fine = PhoneNumber("1", quality_rating="GREEN", status="CONNECTED", platform="CLOUD_API")
    deleted = PhoneNumber(
        "2",
        quality_rating="RED",
        status="DELETED",
        platform="ON_PREMISE",
        can_send_message="BLOCKED",
    )
    onprem = PhoneNumber("3", quality_rating="GREEN", status="CONNECTED", platform="ON_PREMISE")
    waba = Waba(can_send_message="AVAILABLE")
    quiet = status.account_row("acme", "1", waba, [fine, deleted], None)
    assert quiet.state == "up"
    assert quiet.line[-3:] == ("2", "GREEN", "1 number DELETED")
    paging = status.account_row("acme", "1", waba, [fine, onprem], None)
    assert paging.state == "critical" and paging.line[-1] == "1 number on ON_PREMISE"
    alerts = (Path(__file__).parent.parent / "deploy" / "prometheus" / "alerts.yml").read_text()
    rule = alerts.split("alert: WhatsAppCloudNumberOnPremises\n")[1].split("annotations:")[0]
    assert "severity: critical" in rule


async def test_a_single_row_is_counted_as_one_row(aiohttp_client: Any) -> None:
    store = Store(render_target)
    store.update(TargetSnapshot(name="only", url="https://only.example:9090"))
    client = await aiohttp_client(create_app(store, clock=FakeClock(NOW)))
    page = await (await client.get("/")).text()
    assert "(1 row, worst first)" in page
    assert "A Cloud API account is critical when" in page  # what its states mean, too
