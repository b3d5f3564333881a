"""The /metrics body: pre-rendered target pieces joined per family, cached, compressed once.

The data part changes only when a snapshot does. It is kept per family in blocks of targets, each
joined and deflated on its own (raw deflate streams ending on a sync flush concatenate into one),
so after a poll only the blocks holding that target are done again. The exporter's process
metrics are rendered about once a second off the scrape path and deflated at the end of the same
gzip member. A scrape that finds nothing changed returns the cached body as it is.
"""

from __future__ import annotations

import struct
import zlib

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client import generate_latest as text_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from whatsapp_support_exporter.output.families import FAMILIES, METRIC_NAMES
from whatsapp_support_exporter.output.store import Key, Pieces, Store

_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


def process_registry() -> CollectorRegistry:
    """Our own registry (never the global one) for the process and Python runtime metrics."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


# Targets per block: a block of a family is joined and deflated again only when one of its
# targets changed, so a scrape after a poll costs a few small blocks, not the whole body.
BLOCK_TARGETS = 64


def _deflate(data: bytes) -> bytes:
    """A raw deflate stream ending on a sync flush, so such streams concatenate into one."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


class _Block:
    """The text of up to BLOCK_TARGETS targets in one family, and its deflate stream."""

    __slots__ = ("deflated", "text")

    def __init__(self, text: bytes) -> None:
        self.text = text
        self.deflated: bytes | None = None

    def compressed(self) -> bytes:
        if self.deflated is None:
            self.deflated = _deflate(self.text)
        return self.deflated


class Exposition:
    """Builds /metrics bodies from a store without touching anything but memory."""

    def __init__(self, store: Store, registry: CollectorRegistry | None = None) -> None:
        self.store = store
        self.registry = registry if registry is not None else process_registry()
        self._layout = -1
        self._generation = -1
        self._seen: dict[Key, Pieces] = {}  # the pieces each target's blocks were joined from
        self._index: dict[
            Key, int
        ] = {}  # target name (or account key) -> position in the store's order
        self._names: list[Key] = []
        self._blocks: dict[str, list[_Block]] = {}  # per family, in target order
        self._headers = {
            fmt: {name: family.header(fmt).encode() for name, family in FAMILIES.items()}
            for fmt in (False, True)
        }
        self._headers_deflated: dict[bool, dict[str, bytes]] = {False: {}, True: {}}
        self._runtime: dict[bool, bytes] = {}  # process metrics per format, see refresh_runtime
        self._runtime_version = 0
        # (openmetrics, gzip) -> ((store generation, runtime version), body)
        self._bodies: dict[tuple[bool, bool], tuple[tuple[int, int], bytes]] = {}

    def _refresh(self) -> None:
        """Bring the blocks up to the store: only blocks holding a changed target are redone."""
        store = self.store
        if store.generation == self._generation:
            return
        if store.layout != self._layout:
            entries = dict(store.entries())
            self._names = list(entries)
            self._index = {name: i for i, name in enumerate(self._names)}
            self._seen = entries
            self._blocks = {name: self._join_blocks(name) for name in METRIC_NAMES}
            self._layout = store.layout
        else:
            dirty: set[tuple[str, int]] = set()
            for name, entry in store.changed_since(self._generation):
                old = self._seen[name]
                block = self._index[name] // BLOCK_TARGETS
                for family in old.keys() | entry.keys():
                    if old.get(family) != entry.get(family):
                        dirty.add((family, block))
                self._seen[name] = entry
            for family, block in dirty:
                self._blocks[family][block] = self._join_block(family, block * BLOCK_TARGETS)
        self._generation = store.generation

    def _join_blocks(self, family: str) -> list[_Block]:
        return [
            self._join_block(family, start) for start in range(0, len(self._names), BLOCK_TARGETS)
        ]

    def _join_block(self, family: str, start: int) -> _Block:
        seen = self._seen
        texts = []
        for name in self._names[start : start + BLOCK_TARGETS]:
            text = seen[name].get(family)
            if text:
                texts.append(text)
        return _Block("".join(texts).encode())

    def render_target(self, name: str, *, openmetrics: bool = False) -> bytes | None:
        """One target's series (``/metrics?target=``) from the same pieces; None if unknown."""
        entry = self.store.entry(name)
        if entry is None:
            return None
        headers = self._headers[openmetrics]
        parts = []
        for family in METRIC_NAMES:
            text = entry.get(family)
            if text:
                parts += [headers[family], text.encode()]
        if openmetrics:
            parts.append(b"# EOF\n")
        return b"".join(parts)

    def _parts(self, openmetrics: bool) -> list[tuple[str | None, _Block | bytes]]:
        parts: list[tuple[str | None, _Block | bytes]] = []
        headers = self._headers[openmetrics]
        for name in METRIC_NAMES:
            blocks = [b for b in self._blocks.get(name, ()) if b.text]
            if blocks:
                parts.append((name, headers[name]))
                parts.extend((None, b) for b in blocks)
        return parts

    def refresh_runtime(self) -> None:
        """Render the process and Python metrics (for the formats scraped so far).

        Called about once a second off the scrape path (``web.py``), so a scrape never reads
        /proc nor renders; their values are at most that old.
        """
        for openmetrics in list(self._runtime):
            if openmetrics:  # ends with "# EOF", as the whole body must
                body: bytes = openmetrics_latest(self.registry)  # type: ignore[no-untyped-call]
                self._runtime[True] = body
            else:
                self._runtime[False] = text_latest(self.registry)
        self._runtime_version += 1

    def render(self, *, openmetrics: bool = False, gzip: bool = False) -> bytes:
        """The whole body in the asked format, gzip-compressed if asked; cached until it changes."""
        self._refresh()
        if openmetrics not in self._runtime:
            self._runtime[openmetrics] = b""
            self.refresh_runtime()
        version = (self.store.generation, self._runtime_version)
        cached = self._bodies.get((openmetrics, gzip))
        if cached is not None and cached[0] == version:
            return cached[1]
        parts = self._parts(openmetrics)
        tail = self._runtime[openmetrics]
        if gzip:
            body = self._gzip(openmetrics, parts, tail)
        else:
            body = b"".join([p.text if isinstance(p, _Block) else p for _, p in parts] + [tail])
        # a body of an older version is never served again: drop it (at 20,000 targets a plain
        # body is 50 MB, kept for nothing after one curl)
        self._bodies = {k: v for k, v in self._bodies.items() if v[0] == version}
        self._bodies[(openmetrics, gzip)] = (version, body)
        return body

    def _gzip(
        self, openmetrics: bool, parts: list[tuple[str | None, _Block | bytes]], tail: bytes
    ) -> bytes:
        """One gzip member from the blocks' cached deflate streams and the deflated tail."""
        headers = self._headers_deflated[openmetrics]
        streams = [_GZIP_HEADER]
        crc = size = 0
        for name, part in parts:
            text = part.text if isinstance(part, _Block) else part
            crc = zlib.crc32(text, crc)
            size += len(text)
            if isinstance(part, _Block):
                streams.append(part.compressed())
            else:
                assert name is not None
                header = headers.get(name)
                if header is None:
                    header = headers[name] = _deflate(part)
                streams.append(header)
        compressor = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
        streams.append(compressor.compress(tail) + compressor.flush(zlib.Z_FINISH))
        crc = zlib.crc32(tail, crc)
        size += len(tail)
        streams.append(struct.pack("<II", crc, size & 0xFFFFFFFF))
        return b"".join(streams)
