"""Sharding as replicas see it: each target polled by exactly one, few move when one is added."""

from __future__ import annotations

import subprocess
import sys

import pytest

from whatsapp_support_exporter.fleet.sharding import assigned, parse_shard, shard_of
from whatsapp_support_exporter.upstream.onprem.target import Target

NAMES = [f"wa-{i}.prod.example:9090" for i in range(3000)]
TARGETS = [Target(name, f"https://{name}") for name in NAMES]


@pytest.mark.parametrize("total", [1, 2, 3, 7])
def test_every_target_is_polled_by_exactly_one_of_n_shards(total: int) -> None:
    owners: dict[str, list[int]] = {}
    for shard in range(total):
        for target in assigned(TARGETS, shard, total):
            owners.setdefault(target.name, []).append(shard)
    assert sorted(owners) == sorted(NAMES)
    assert all(len(shards) == 1 for shards in owners.values())


@pytest.mark.parametrize("total", [2, 3, 5])
def test_shards_are_about_even(total: int) -> None:
    sizes = [len(assigned(TARGETS, shard, total)) for shard in range(total)]
    expected = len(TARGETS) / total
    assert all(abs(size - expected) < 0.15 * expected for size in sizes), sizes


@pytest.mark.parametrize("total", [1, 2, 4, 9])
def test_adding_a_replica_moves_about_one_in_n_plus_1_targets(total: int) -> None:
    moved = sum(shard_of(name, total) != shard_of(name, total + 1) for name in NAMES)
    expected = len(NAMES) / (total + 1)
    assert abs(moved - expected) < 0.15 * expected, (moved, expected)
    # and every target that moved went to the new replica, none between the old ones
    assert all(shard_of(name, total + 1) in (shard_of(name, total), total) for name in NAMES)


def test_the_assignment_is_the_same_in_another_process() -> None:
    """Replicas are separate processes: Python's per-process string hash must not be used."""
    code = "from whatsapp_support_exporter.fleet.sharding import shard_of;print([shard_of(f'wa-{i}', 5) for i in range(50)])"
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345"},
    ).stdout
    assert other.strip() == str([shard_of(f"wa-{i}", 5) for i in range(50)])


def test_assigned_keeps_the_given_order() -> None:
    mine = [t.name for t in assigned(TARGETS, 1, 3)]
    assert mine == sorted(mine, key=NAMES.index)


@pytest.mark.parametrize(
    ("value", "shard"),
    [("0", 0), ("3", 3), (" 12 ", 12), (4, 4), ("wa-exporter-2", 2), ("exporter-10", 10)],
)
def test_a_shard_is_a_number_or_a_statefulset_pod_name(value: str | int, shard: int) -> None:
    assert parse_shard(value) == shard


@pytest.mark.parametrize("value", ["", "wa-exporter", "two", "-1", -1, "wa-exporter-2a"])
def test_anything_else_is_not_a_shard(value: str | int) -> None:
    with pytest.raises(ValueError):
        parse_shard(value)
