"""Fleets from a configuration file, and reloads as an operator sees them: unchanged targets keep
their counters and tokens, a bad file changes nothing, edits are picked up while running."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestClient

from tests.conftest import FakeClock, make_settings, wait_for
from whatsapp_api_simulator.onprem import Simulator
from whatsapp_support_exporter.cli.main import _reload_text
from whatsapp_support_exporter.fleet.poller import Poller
from whatsapp_support_exporter.fleet.reload import Fleet
from whatsapp_support_exporter.output.exposition import Exposition
from whatsapp_support_exporter.output.families import render_target
from whatsapp_support_exporter.output.store import Store
from whatsapp_support_exporter.web.app import create_app

KEY_A = "fleet-key-a-0123456789"
USER_B, PASSWORD_B = "ops-b", "pw-b-5f1e2d3c"


def write_yaml(path: Path, data: Any) -> None:
    """Write a file whose size changes with its content (the watcher compares mtime and size)."""
    write(path, yaml.safe_dump(data))


def write(path: Path, text: str) -> None:
    """Files of a few bytes: writing them from a test's event loop blocks nobody."""
    path.write_text(text)


def metric(text: str, name: str, target: str | None = None) -> float | None:
    """The value of one series (the first that matches), or None when it is not served."""
    labels = rf'\{{target="{re.escape(target)}"\}}' if target is not None else ""
    found = re.search(rf"^{name}{labels} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


def served_targets(text: str) -> set[str]:
    return set(re.findall(r'^whatsapp_exporter_polls_total\{target="([^"]+)"\}', text, re.M))


class Replica:
    """One exporter's fleet and poller, in process."""

    def __init__(self, fleet: Fleet, poller: Poller, store: Store) -> None:
        self.fleet, self.poller, self.store = fleet, poller, store
        self.exposition = Exposition(store)

    def metrics(self) -> str:
        return self.exposition.render().decode()

    def polls(self, target: str) -> int:
        snap = self.store.snapshots.get(target)
        return snap.polls if snap is not None else 0


StartReplica = Callable[..., Awaitable[Replica]]


@pytest.fixture
async def start_replica() -> AsyncIterator[StartReplica]:
    """Factory: ``await start_replica(config_file=..., shard=..., clock=...)``, stopped at the end."""
    pollers: list[Poller] = []

    async def start(*, clock: Callable[[], float] | None = None, **overrides: Any) -> Replica:
        settings = make_settings(targets=[], **overrides)
        store = Store(render_target)
        fleet = Fleet(settings, store, clock=clock) if clock else Fleet(settings, store)
        poller = Poller(settings, store, fleet.initial())
        fleet.poller = poller
        pollers.append(poller)
        await poller.start()
        return Replica(fleet, poller, store)

    yield start
    for poller in pollers:
        await poller.stop()


@pytest.fixture
def two_auths(sim: Simulator, sim_base: str, tmp_path: Path) -> Path:
    """Two instances with their own credentials, and a configuration file naming both auths."""
    sim.add_instance("one", "single", api_key=KEY_A)
    sim.add_instance("two", "ha", username=USER_B, password=PASSWORD_B)
    (tmp_path / "password-b").write_text(PASSWORD_B + "\n")
    config = tmp_path / "config.yml"
    write_yaml(config, fleet_config(sim_base, ["one", "two"]))
    return config


def fleet_config(base: str, names: list[str], **extra: Any) -> dict[str, Any]:
    """Targets named after instances: ``one`` uses auth ``a`` (key), the others ``b`` (login)."""
    return {
        "auths": {
            "a": {"api_key": KEY_A},
            "b": {"username": USER_B, "password_file": "password-b"},
        },
        "targets": [
            {"name": n, "url": f"{base}/{n}", "auth": "a" if n == "one" else "b", **extra}
            for n in names
        ],
    }


async def test_a_config_file_with_two_auths_polls_both_with_their_own_credentials(
    start_replica: StartReplica, two_auths: Path, sim: Simulator
) -> None:
    replica = await start_replica(config_file=two_auths)
    await wait_for(lambda: all(s.up for s in replica.store.snapshots.values()))
    text = replica.metrics()
    assert metric(text, "whatsapp_up", "one") == 1
    assert metric(text, "whatsapp_up", "two") == 1
    assert sim.instance("one").requests["login"] == 0  # the key was enough
    assert sim.instance("two").requests["login"] == 1  # one login, then the token
    assert metric(text, "whatsapp_exporter_config_last_reload_successful") == 1


async def test_a_reload_keeps_the_counters_and_token_of_unchanged_targets(
    start_replica: StartReplica, two_auths: Path, sim: Simulator, sim_base: str
) -> None:
    replica = await start_replica(config_file=two_auths)
    await wait_for(lambda: replica.polls("one") >= 2 and replica.polls("two") >= 2)
    kept = dict(replica.poller.pollers)
    logins = sim.instance("two").requests["login"]
    write_yaml(two_auths, fleet_config(sim_base, ["one", "two"]))  # the same fleet, rewritten
    assert await replica.fleet.reload("test") is None
    before = {name: replica.polls(name) for name in ("one", "two")}
    assert replica.poller.pollers == kept  # the same poller objects
    await wait_for(lambda: all(replica.polls(n) > before[n] for n in before))
    text = replica.metrics()
    for name, polls in before.items():
        assert (metric(text, "whatsapp_exporter_polls_total", name) or 0) > polls >= 2
    assert sim.instance("two").requests["login"] == logins


async def test_a_changed_target_restarts_a_removed_one_vanishes_a_new_one_appears(
    start_replica: StartReplica, two_auths: Path, sim: Simulator, sim_base: str
) -> None:
    sim.add_instance("three", "single", username=USER_B, password=PASSWORD_B)
    replica = await start_replica(config_file=two_auths)
    await wait_for(lambda: replica.polls("one") >= 2 and replica.polls("two") >= 1)
    config = fleet_config(sim_base, ["one", "three"])
    config["targets"][0]["labels"] = {"env": "prod"}  # "one" changes, "two" goes
    write_yaml(two_auths, config)
    assert await replica.fleet.reload("test") is None
    assert replica.polls("one") == 0  # restarted: a new poller, counting from zero
    assert "two" not in replica.poller.pollers
    text = replica.metrics()
    assert 'target="two"' not in text
    await wait_for(lambda: replica.store.snapshots["three"].up)
    text = replica.metrics()
    assert metric(text, "whatsapp_up", "three") == 1
    assert 'whatsapp_target_info{target="one",env="prod"} 1' in text
    assert 'target="two"' not in text


async def test_a_broken_config_changes_nothing_until_it_is_fixed(
    start_replica: StartReplica, two_auths: Path, sim_base: str
) -> None:
    clock = FakeClock()
    replica = await start_replica(config_file=two_auths, clock=clock)
    loaded_at = clock.now
    text = replica.metrics()
    assert metric(text, "whatsapp_exporter_config_last_reload_successful") == 1
    assert metric(text, "whatsapp_exporter_config_last_reload_success_timestamp_seconds") == (
        loaded_at
    )
    kept = dict(replica.poller.pollers)
    clock.advance(60)
    write(two_auths, "targets:\n  - name: one\n    url: [not, a, url\n")
    error = await replica.fleet.reload("test")
    assert error is not None and str(two_auths) in error and "\n" not in error
    assert replica.poller.pollers == kept
    text = replica.metrics()
    assert metric(text, "whatsapp_exporter_config_last_reload_successful") == 0
    assert metric(text, "whatsapp_exporter_config_last_reload_success_timestamp_seconds") == (
        loaded_at
    )
    assert served_targets(text) == {"one", "two"}

    clock.advance(60)
    write_yaml(two_auths, fleet_config(sim_base, ["one", "two"]))
    assert await replica.fleet.reload("test") is None
    text = replica.metrics()
    assert metric(text, "whatsapp_exporter_config_last_reload_successful") == 1
    assert metric(text, "whatsapp_exporter_config_last_reload_success_timestamp_seconds") == (
        clock.now
    )


async def test_an_unknown_auth_in_a_reload_is_refused_whole(
    start_replica: StartReplica, two_auths: Path, sim_base: str
) -> None:
    replica = await start_replica(config_file=two_auths)
    config = fleet_config(sim_base, ["one", "two", "new"])
    config["targets"][2]["auth"] = "missing"
    write_yaml(two_auths, config)
    error = await replica.fleet.reload("test")
    assert error is not None and 'no auth named "missing"' in error
    assert set(replica.poller.pollers) == {"one", "two"}  # not even the good part is applied


async def test_the_watcher_picks_up_an_edited_target_file(
    start_replica: StartReplica, sim: Simulator, sim_base: str, tmp_path: Path
) -> None:
    for name in ("f1", "f2", "f3"):
        sim.add_instance(name, "single", api_key=KEY_A)
    config = tmp_path / "config.yml"
    write_yaml(
        config,
        {"auths": {"a": {"api_key": KEY_A}}, "target_files": ["targets/*.yml", "targets/*.json"]},
    )
    (tmp_path / "targets").mkdir()
    first = tmp_path / "targets" / "first.yml"
    write_yaml(first, [{"targets": [f"f1={sim_base}/f1"], "labels": {"auth": "a"}}])
    replica = await start_replica(config_file=config)
    watcher = asyncio.create_task(replica.fleet.watch(every=0.01))
    try:
        await wait_for(lambda: replica.polls("f1") >= 1)
        polled = replica.polls("f1")
        targets = [f"f1={sim_base}/f1", f"f2={sim_base}/f2"]
        write_yaml(first, [{"targets": targets, "labels": {"auth": "a"}}])  # edited
        await wait_for(lambda: "f2" in replica.store.snapshots and replica.store.snapshots["f2"].up)
        assert replica.polls("f1") >= polled  # f1 was kept, not restarted
        second = tmp_path / "targets" / "second.json"
        write(second, f'[{{"targets": ["f3={sim_base}/f3"], "labels": {{"auth": "a"}}}}]')
        await wait_for(lambda: "f3" in replica.store.snapshots)  # a new file matching a glob
        os.unlink(first)
        await wait_for(lambda: set(replica.poller.pollers) == {"f3"})  # a deleted file
        assert served_targets(replica.metrics()) == {"f3"}
    finally:
        watcher.cancel()


async def test_a_rotated_password_file_heals_after_a_401_without_restart(
    start_replica: StartReplica, two_auths: Path, sim: Simulator, tmp_path: Path
) -> None:
    replica = await start_replica(config_file=two_auths)
    await wait_for(lambda: replica.store.snapshots["two"].up)
    poller = replica.poller.pollers["two"]
    two = sim.instance("two")
    # the secret is rotated on the client (its tokens go with it) and in the mounted file
    two.password = "rotated-pw-9a8b7c"
    assert two.tokens is not None
    two.tokens.clear()
    write(tmp_path / "password-b", "rotated-pw-9a8b7c\n")
    logins = two.requests["login"]
    polls = poller.snapshot.polls
    await wait_for(lambda: poller.snapshot.polls > polls + 1 and poller.snapshot.up)
    assert replica.poller.pollers["two"] is poller  # healed in place
    assert two.requests["login"] > logins


# -- POST /-/reload and SIGHUP ----------------------------------------------------------------


async def test_post_reload_applies_a_new_config_and_reports_a_broken_one(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
    two_auths: Path,
    sim: Simulator,
    sim_base: str,
) -> None:
    sim.add_instance("three", "single", username=USER_B, password=PASSWORD_B)
    settings = make_settings(targets=[], config_file=two_auths, web_enable_lifecycle=True)
    store = Store(render_target)
    fleet = Fleet(settings, store)
    poller = fleet.poller = Poller(settings, store, fleet.initial())
    app = create_app(
        store, poller=poller, reload=fleet.reload, reload_status=lambda: _reload_text(fleet)
    )
    client = await aiohttp_client(app)
    await wait_for(lambda: poller.pollers["two"].snapshot.polls >= 2)
    logins = sim.instance("two").requests["login"]
    write_yaml(two_auths, fleet_config(sim_base, ["one", "two", "three"]))
    response = await client.post("/-/reload")
    assert response.status == 200
    await wait_for(lambda: store.snapshots["three"].up)
    assert poller.pollers["two"].snapshot.polls >= 2
    assert sim.instance("two").requests["login"] == logins

    write(two_auths, "auths: {a: {api_key: short}}\n")
    response = await client.post("/-/reload")
    assert response.status == 500
    body = await response.text()
    assert "reload failed" in body and "short" not in body  # the error line, never the secret
    text = await (await client.get("/metrics")).text()
    assert "whatsapp_exporter_config_last_reload_successful 0" in text
    assert 'whatsapp_up{target="three"} 1' in text
    page = await (await client.get("/")).text()
    assert "the last reload failed" in page


async def test_without_lifecycle_post_reload_is_not_served(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
) -> None:
    client = await aiohttp_client(create_app(Store(render_target)))
    assert (await client.post("/-/reload")).status in (404, 405)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    try:
        async with session.get(url) as response:
            return response.status, await response.text()
    except aiohttp.ClientError:
        return 0, ""


async def test_sighup_reloads_a_running_exporter_keeping_counters_and_tokens(
    two_auths: Path, sim: Simulator, sim_base: str
) -> None:
    """The real process; POST /-/reload is not served there without --web.enable-lifecycle."""
    sim.add_instance("three", "single", username=USER_B, password=PASSWORD_B)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "whatsapp_support_exporter",
        "--config.file",
        str(two_auths),
        "--poll.interval",
        "1s",
        "--web.listen-address",
        f"127.0.0.1:{port}",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            text = ""

            async def scrape() -> str:
                nonlocal text
                text = (await _get(session, f"{base}/metrics"))[1]
                return text

            async def until(predicate: Callable[[str], bool]) -> None:
                for _ in range(500):
                    if predicate(await scrape()):
                        return
                    assert proc.returncode is None
                    await asyncio.sleep(0.02)
                raise AssertionError("condition not reached in time")

            await until(lambda t: (metric(t, "whatsapp_exporter_polls_total", "two") or 0) >= 1)
            polls = metric(text, "whatsapp_exporter_polls_total", "two") or 0
            logins = sim.instance("two").requests["login"]
            assert logins == 1
            write_yaml(two_auths, fleet_config(sim_base, ["one", "two", "three"]))
            proc.send_signal(signal.SIGHUP)
            await until(lambda t: metric(t, "whatsapp_up", "three") == 1)
            assert (metric(text, "whatsapp_exporter_polls_total", "two") or 0) >= polls
            assert sim.instance("two").requests["login"] == logins
            async with session.post(f"{base}/-/reload") as response:
                assert response.status in (404, 405)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.stderr is not None
        err = (await asyncio.wait_for(proc.stderr.read(), 5)).decode()
        await asyncio.wait_for(proc.wait(), 5)
    assert "configuration reloaded" in err and "SIGHUP" in err
    assert PASSWORD_B not in err and KEY_A not in err


# -- sharding ---------------------------------------------------------------------------------


@pytest.mark.parametrize("total", [3, 4])
async def test_replicas_of_one_fleet_poll_every_target_exactly_once_between_them(
    total: int, start_replica: StartReplica, sim: Simulator, sim_base: str, tmp_path: Path
) -> None:
    names = [f"s{i}" for i in range(12)]
    for name in names:
        sim.add_instance(name, "single", api_key=KEY_A)
    config = tmp_path / "config.yml"
    write_yaml(
        config,
        {
            "auths": {"a": {"api_key": KEY_A}},
            "targets": [{"name": n, "url": f"{sim_base}/{n}", "auth": "a"} for n in names],
        },
    )
    replicas = [
        await start_replica(config_file=config, shard=shard, total_shards=total)
        for shard in range(total)
    ]
    await wait_for(lambda: all(r.polls(n) >= 1 for r in replicas for n in r.poller.pollers))
    for replica in replicas:
        await replica.poller.stop()
    owners: dict[str, list[int]] = {}
    for shard, replica in enumerate(replicas):
        text = replica.metrics()
        assert metric(text, "whatsapp_exporter_shard_ordinal") == shard
        assert metric(text, "whatsapp_exporter_total_shards") == total
        for name in served_targets(text):
            owners.setdefault(name, []).append(shard)
    assert sorted(owners) == sorted(names)
    assert all(len(shards) == 1 for shards in owners.values()), owners
    for name, (shard,) in owners.items():
        polls = replicas[shard].polls(name)
        # only its owner asked (a poll cancelled by the stop may have reached the upstream)
        assert polls <= sim.instance(name).requests["support"] <= polls + 1


async def test_the_watcher_does_not_reload_while_nothing_changes(
    start_replica: StartReplica, two_auths: Path
) -> None:
    clock = FakeClock()
    replica = await start_replica(config_file=two_auths, clock=clock)
    loaded_at = clock.now
    clock.advance(60)  # a reload now would move the success timestamp
    watcher = asyncio.create_task(replica.fleet.watch(every=0.005))
    try:
        await asyncio.sleep(0.1)  # about twenty checks
        assert replica.fleet.status.success_at == loaded_at
        # a secret file the configuration names counts as part of it
        write(two_auths.parent / "password-b", PASSWORD_B + "\r\n")
        await wait_for(lambda: replica.fleet.status.success_at == clock.now)
    finally:
        watcher.cancel()
