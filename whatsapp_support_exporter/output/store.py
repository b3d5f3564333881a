"""The store: every target's and account's latest snapshot and its series, rendered once per
change.

Shaped like kube-state-metrics' ``MetricsStore``: the store is given the render function and
keeps each target's rendered pieces (text per metric family) with a generation number. The
writer (``exposition.py``) reads the pieces, asking what changed since the generation it last
saw; the web app reads the snapshots (the landing page, ``/sd``, ``?target=``). Nothing here is
consumed destructively, so any number of readers see the same thing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from whatsapp_support_exporter.output.snapshot import AccountSnapshot, TargetSnapshot

Pieces = dict[str, str]  # metric family name -> that family's sample lines
Render = Callable[[TargetSnapshot], Pieces]
AccountRender = Callable[[AccountSnapshot], Pieces]
# A target is kept under its name, a Cloud API account under ("account", name): the two may
# share a name.
Key = str | tuple[str, str]
# The key of the exporter's own series (build, reload, shard), served before the targets'.
EXPORTER = ""


class Store:
    """Snapshots and rendered pieces by target name, in the order targets were added."""

    def __init__(self, render: Render, render_account: AccountRender | None = None) -> None:
        self._render = render
        self._render_account = render_account
        self.snapshots: dict[str, TargetSnapshot] = {}
        self.accounts: dict[str, AccountSnapshot] = {}
        self._entries: dict[Key, Pieces] = {}
        # target name -> the generation of its last change, oldest first: what changed since a
        # generation costs what changed, not a walk over the fleet
        self._changes: dict[Key, int] = {}
        self.generation = 0  # bumps on every change
        self.layout = 0  # bumps when a target is added or removed (positions move)

    def update(self, snapshot: TargetSnapshot) -> None:
        """Store a target's new snapshot and render its series."""
        self.snapshots[snapshot.name] = snapshot
        self._put(snapshot.name, self._render(snapshot))

    def update_account(self, snapshot: AccountSnapshot) -> None:
        """Store a Cloud API account's new snapshot and render its series."""
        if self._render_account is None:
            raise RuntimeError("this store was made without a render function for accounts")
        self.accounts[snapshot.name] = snapshot
        self._put(("account", snapshot.name), self._render_account(snapshot))

    def delete_account(self, name: str) -> None:
        """Forget an account: its series go with it."""
        self.accounts.pop(name, None)
        self._forget(("account", name))

    def set_exporter_pieces(self, pieces: Pieces) -> None:
        """The exporter's own series (not tied to a target)."""
        self._put(EXPORTER, pieces)

    def delete(self, name: str) -> None:
        """Forget a target: its series go with it."""
        self.snapshots.pop(name, None)
        self._forget(name)

    def _forget(self, key: Key) -> None:
        self._changes.pop(key, None)
        if self._entries.pop(key, None) is not None:
            self.generation += 1
            self.layout += 1

    def _put(self, name: Key, pieces: Pieces) -> None:
        old = self._entries.get(name)
        if old is not None and old == pieces:
            return
        self.generation += 1
        self._changes.pop(name, None)
        self._changes[name] = self.generation
        if old is None:
            self.layout += 1
            if name == EXPORTER:  # always first
                self._entries = {EXPORTER: pieces, **self._entries}
                return
        self._entries[name] = pieces

    def changed_since(self, generation: int) -> list[tuple[Key, Pieces]]:
        """The pieces stored after ``generation`` (the exporter's too), newest first."""
        changed = []
        for name, stored in reversed(self._changes.items()):
            if stored <= generation:
                break
            changed.append((name, self._entries[name]))
        return changed

    def entries(self) -> Iterator[tuple[Key, Pieces]]:
        """Every target's pieces (and the exporter's first), in exposition order."""
        return iter(self._entries.items())

    def entry(self, name: str) -> Pieces | None:
        return self._entries.get(name) if name != EXPORTER else None

    def __len__(self) -> int:
        return len(self._entries)
