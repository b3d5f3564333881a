"""The snapshot store: per target, the last good data, when, the last error, the counters.

The poller writes here and nothing else does. Each write renders that one target's series
(``collector.render_target``) and marks the metric families whose text changed, so the scrape
path only joins pre-rendered pieces (``exposition.py``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from exporter.collector import METRIC_NAMES, exporter_info, render_target
from exporter.support import Support


@dataclass
class TargetSnapshot:
    """Everything known about one target; replaced field by field by its poller only."""

    name: str
    url: str
    up: bool = False
    support: Support | None = None  # the last good data, None once stale
    received_at: float | None = None  # wall time the last good response arrived
    last_success: float | None = None
    last_duration: float | None = None
    last_error: str | None = None  # a reason of collector.ERROR_REASONS
    last_error_detail: str = ""
    polls: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    logins: Counter[str] = field(default_factory=Counter)
    invalid_fields: Counter[str] = field(default_factory=Counter)


class SnapshotStore:
    """Snapshots by target name, with each target's series rendered once per change."""

    def __init__(self, *, with_logins: bool = False) -> None:
        self.with_logins = with_logins
        self.snapshots: dict[str, TargetSnapshot] = {}
        self._pieces: dict[str, dict[str, str]] = {"": exporter_info()}
        self._dirty: set[str] = set(METRIC_NAMES)
        self.version = 0

    def publish(self, snapshot: TargetSnapshot) -> None:
        """Store a target's new state and render its series."""
        self.snapshots[snapshot.name] = snapshot
        self._replace(snapshot.name, render_target(snapshot, with_logins=self.with_logins))

    def remove(self, name: str) -> None:
        """Forget a target: its series go with it."""
        self.snapshots.pop(name, None)
        self._replace(name, {})

    def _replace(self, name: str, pieces: dict[str, str]) -> None:
        old = self._pieces.get(name, {})
        changed = {f for f in old.keys() | pieces.keys() if old.get(f) != pieces.get(f)}
        if pieces:
            self._pieces[name] = pieces
        else:
            self._pieces.pop(name, None)
        if changed:
            self._dirty |= changed
            self.version += 1

    def take_dirty(self) -> set[str]:
        """The families changed since the last call (the exposition re-joins only those)."""
        dirty, self._dirty = self._dirty, set()
        return dirty

    def family_text(self, family: str) -> str:
        """Every target's samples of one family, in target order."""
        return "".join(p[family] for p in self._pieces.values() if family in p)
