"""The machinery of the family table: a family, its samples, escaping and the sample lines.

Shared by the On-Premises families (``families.py``) and the Cloud API's (``cloud_families.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    GAUGE = "gauge"
    COUNTER = "counter"


# label values of one sample, and its value
Sample = tuple[tuple[str, ...], float]


@dataclass(frozen=True)
class Family:
    """One metric family: what it is called, what it means, which labels its samples carry."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()  # the labels after target (and host, container_id)
    # how a container family takes its samples from a container (None: a per-target family)
    samples: Callable[[Any, float | None], Sequence[Sample]] | None = None
    # rendered label suffixes by label values (see extra_labels); not part of the family's identity
    extras: dict[tuple[str, ...], str] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )

    def header(self, openmetrics: bool) -> str:
        """HELP and TYPE lines; OpenMetrics names a counter family without ``_total``."""
        name = self.name
        if openmetrics and self.kind is Kind.COUNTER:
            name = name.removesuffix("_total")
        return f"# HELP {name} {self.help}\n# TYPE {name} {self.kind}\n"


# Label value sets remembered per family. They repeat across a fleet (states, reasons, shard ids,
# a few versions): a few dozen per family. Values that keep changing (versions over months,
# numbers of accounts that come and go, hostile upstream data) empty the cache when it is full,
# so they cost a rebuild, never memory that grows with time or with what came and went.
_EXTRAS_KEPT = 512


def extra_labels(family: Family, values: tuple[str, ...]) -> str:
    """``,name="value"`` for each label, escaped, built on a miss of ``family.extras`` (callers
    look there first, inline: label sets repeat, so each is built once)."""
    cache = family.extras
    if len(cache) >= _EXTRAS_KEPT:  # hostile label values cost a rebuild, not memory
        cache.clear()
    pairs = zip(family.labels, values, strict=True)
    extra = cache[values] = "".join([f',{label}="{escape(v)}"' for label, v in pairs])
    return extra


def states(known: tuple[str, ...], current: str) -> list[Sample]:
    """A state set: one series per documented state (zeros too), plus an undocumented current."""
    samples: list[Sample] = [((state,), 1 if state == current else 0) for state in known]
    if current not in known:
        samples.append(((current,), 1))
    return samples


# Sample functions return sequences, not generators: a poll renders 13 families per container,
# and a generator per family cost a third of the render.
def one(value: float | None) -> tuple[Sample, ...]:
    return () if value is None else (((), value),)


def flag(value: bool | None) -> tuple[Sample, ...]:
    return () if value is None else (((), 1 if value else 0),)


GAUGE, COUNTER = Kind.GAUGE, Kind.COUNTER


def escape(value: str) -> str:
    """Label value escaping shared by the text format and OpenMetrics."""
    if "\\" in value or '"' in value or "\n" in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def number(value: float) -> str:
    """A sample value as Prometheus writes it (the common cases first: this runs per sample)."""
    if type(value) is int:
        return str(value)
    if isinstance(value, int):  # bool, IntEnum
        return str(int(value))
    if value.is_integer():  # finite and whole
        return str(int(value)) if abs(value) < 1e15 else repr(float(value))
    if value != value:
        return "NaN"
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    return repr(float(value))


def _append(lines: list[str], family: Family, labels: str, samples: Iterable[Sample]) -> None:
    """Sample lines of one family; ``labels`` are the target's (and container's), escaped.

    A sample with the wrong number of label values is a bug in this module: it raises.
    """
    name, arity, extras = family.name, len(family.labels), family.extras
    for values, value in samples:
        if len(values) != arity:
            raise ValueError(f"{name} takes labels {family.labels}, got {values!r}")
        inner = labels
        if values:
            extra = extras.get(values) or extra_labels(family, values)
            inner = labels + extra if labels else extra[1:]
        text = str(value) if type(value) is int else number(value)
        lines.append(f"{name}{{{inner}}} {text}\n" if inner else f"{name} {text}\n")


class Lines:
    """Per-family sample lines of one target, in the order they are rendered."""

    __slots__ = ("lines",)

    def __init__(self) -> None:
        self.lines: dict[str, list[str]] = {}

    def add(self, family: Family, labels: str, samples: Iterable[Sample]) -> None:
        lines = self.lines.get(family.name)
        if lines is None:
            lines = self.lines[family.name] = []
        _append(lines, family, labels, samples)

    def one(self, family: Family, labels: str, value: float) -> None:
        """The single sample of a family without labels of its own (the common case, direct)."""
        if family.labels:
            raise ValueError(f"{family.name} takes labels {family.labels}, got none")
        name = family.name
        text = str(value) if type(value) is int else number(value)
        line = f"{name}{{{labels}}} {text}\n" if labels else f"{name} {text}\n"
        self.lines.setdefault(name, []).append(line)


# Both upstreams name the fields they dropped: one family, labelled by target or account.
INVALID_FIELDS = Family(
    "whatsapp_exporter_invalid_fields_total",
    COUNTER,
    "Upstream fields dropped for a wrong type; the rest of the target is still exported.",
    ("field",),
)
