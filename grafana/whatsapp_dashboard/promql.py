"""PromQL of the dashboard: selectors filtered by the variables, label sets, state codes.

Queries keep ``job, instance, target`` apart, so two sidecars that both name their target
"local" never merge, and totals over containers take ``max`` per container first, so two HA
sidecars exporting the same cluster never count it twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

# Meta documents 9223372036853727000 (about 2^63) for a filesystem without practical limit.
UNLIMITED = 9e18
DAY = 86400
TARGET = ("job", "instance", "target")
CONTAINER = (*TARGET, "host", "container_id")
EXPORTER = ("job", "instance")
ACCOUNT = ("job", "instance", "account")
NUMBER = (*ACCOUNT, "phone_number_id")
LEGEND_NUMBER = "{{account}} {{phone_number_id}} ({{instance}})"
LEGEND_CONTAINER = "{{target}} {{host}} {{container_id}} ({{instance}})"
LEGEND_TARGET = "{{target}} ({{instance}})"

# ---------------------------------------------------------------- PromQL


def sel(metric: str, extra: str = "") -> str:
    """A selector of a target's series, filtered by the job, instance and target variables."""
    return f'{metric}{{job=~"$job", instance=~"$instance", target=~"$target"{extra}}}'


def cloud_sel(metric: str, extra: str = "") -> str:
    """A selector of a Cloud API account's series, filtered by the job, instance and account."""
    return f'{metric}{{job=~"$job", instance=~"$instance", account=~"$account"{extra}}}'


def exporter_sel(metric: str) -> str:
    """A selector of an exporter's own series (they carry no target)."""
    return f'{metric}{{job=~"$job", instance=~"$instance"}}'


def by(labels: Sequence[str]) -> str:
    return f"by ({', '.join(labels)})"


def per_container(metric: str, extra: str = "") -> str:
    """One series per container, whoever exports it.

    A cluster container is known by its ``host`` and ``container_id`` (two HA sidecars export
    the same ones: ``max`` keeps one); a single instance has neither, so it is known by the
    exporter that polls it.
    """
    clustered = sel(metric, extra + ', host!=""')
    single = sel(metric, extra + ', host=""')
    cluster = f"max by (job, target, host, container_id) ({clustered})"
    single = f"max {by(TARGET)} ({single})"
    return f"({cluster} or {single})"


def state_code(
    metric: str,
    label: str,
    states: Sequence[str],
    keep: Sequence[str],
    select: Callable[[str, str], str] = sel,
) -> str:
    """A state set as one number per series: 1 for the first state, 2 for the next...

    0 means an undocumented state (every documented series is 0).
    """
    terms = [
        f"{i} * max {by(keep)} ({select(metric, f', {label}=' + json.dumps(state))})"
        for i, state in enumerate(states, start=1)
    ]
    return "\n+ ".join(terms)


def finite_free_space() -> str:
    """Free space of directories with a practical limit (the unlimited value left out)."""
    return f"{sel('whatsapp_free_space_bytes')} < {UNLIMITED:.0e}"
