"""The snapshot store: per target, the last good data, when, the last error, the counters.

The poller writes here and nothing else does. Each write renders that one target's series
(``collector.render_target``) and marks the metric families whose text changed, so the scrape
path only joins pre-rendered pieces (``exposition.py``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from exporter.collector import exporter_info, render_target
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
        # Rendered text per target (in publication order), then per family; "" is the exporter.
        self.pieces: dict[str, dict[str, str]] = {"": exporter_info()}
        # Per family, the targets whose text changed since the exposition last looked.
        self._dirty: dict[str, set[str]] = {}
        self.version = 0  # bumps on every change of any text
        self.layout = 0  # bumps when a target is added or removed (the order of pieces moves)

    def publish(self, snapshot: TargetSnapshot) -> None:
        """Store a target's new state and render its series."""
        self.snapshots[snapshot.name] = snapshot
        self._replace(snapshot.name, render_target(snapshot, with_logins=self.with_logins))

    def remove(self, name: str) -> None:
        """Forget a target: its series go with it."""
        self.snapshots.pop(name, None)
        self._replace(name, {})

    def _replace(self, name: str, pieces: dict[str, str]) -> None:
        old = self.pieces.get(name)
        if old is None or not pieces:
            if old is None and not pieces:
                return
            self.layout += 1
            if pieces:
                self.pieces[name] = pieces
            else:
                del self.pieces[name]
            self.version += 1
            return
        changed = [f for f, text in pieces.items() if old.get(f) != text]
        changed += [f for f in old if f not in pieces]
        self.pieces[name] = pieces
        if changed:
            for family in changed:
                dirty = self._dirty.get(family)
                if dirty is None:
                    self._dirty[family] = {name}
                else:
                    dirty.add(name)
            self.version += 1

    def take_dirty(self) -> dict[str, set[str]]:
        """Per family, the targets changed since the last call (the exposition re-joins only
        the blocks holding them). Meaningless after a layout change: then everything is new."""
        dirty, self._dirty = self._dirty, {}
        return dirty
