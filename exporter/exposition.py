"""The /metrics body: pre-rendered target pieces joined per family, cached, compressed once.

The data part changes only when a snapshot does, so it is joined and deflated once per change;
the exporter's process metrics (small, always moving) are rendered per scrape and appended to the
same gzip member (the cached deflate stream ends on a sync flush, so another stream continues it).
"""

from __future__ import annotations

import struct
import zlib

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client import generate_latest as text_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from exporter.collector import FAMILIES, METRIC_NAMES
from exporter.store import SnapshotStore

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_EOF = b"# EOF\n"


def process_registry() -> CollectorRegistry:
    """Our own registry (never the global one) for the process and Python runtime metrics."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class _Cached:
    """The joined data part for one format, and its deflate stream once asked for."""

    def __init__(self) -> None:
        self.version = -1
        self.body = b""
        self.deflated: bytes | None = None
        self.crc = 0


class Exposition:
    """Builds /metrics bodies from a store without touching anything but memory."""

    def __init__(self, store: SnapshotStore, registry: CollectorRegistry | None = None) -> None:
        self.store = store
        self.registry = registry if registry is not None else process_registry()
        self._joined: dict[str, str] = {}
        self._cache = {False: _Cached(), True: _Cached()}

    def _data(self, openmetrics: bool) -> _Cached:
        cached = self._cache[openmetrics]
        if cached.version != self.store.version:
            for family in self.store.take_dirty():
                self._joined[family] = self.store.family_text(family)
            parts = []
            for name in METRIC_NAMES:
                text = self._joined.get(name)
                if text:
                    parts.append(FAMILIES[name].header(openmetrics))
                    parts.append(text)
            cached.body = "".join(parts).encode()
            cached.version = self.store.version
            cached.deflated = None
        return cached

    def _runtime(self, openmetrics: bool) -> bytes:
        if openmetrics:
            body: bytes = openmetrics_latest(self.registry)  # type: ignore[no-untyped-call]
            return body.removesuffix(_EOF)
        text: bytes = text_latest(self.registry)
        return text

    def render(self, *, openmetrics: bool = False, gzip: bool = False) -> bytes:
        """The whole body in the asked format, gzip-compressed if asked."""
        data = self._data(openmetrics)
        tail = self._runtime(openmetrics) + (_EOF if openmetrics else b"")
        if not gzip:
            return data.body + tail
        if data.deflated is None:
            compressor = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
            data.deflated = compressor.compress(data.body) + compressor.flush(zlib.Z_SYNC_FLUSH)
            data.crc = zlib.crc32(data.body)
        compressor = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
        end = compressor.compress(tail) + compressor.flush(zlib.Z_FINISH)
        crc = zlib.crc32(tail, data.crc)
        size = (len(data.body) + len(tail)) & 0xFFFFFFFF
        return b"".join((_GZIP_HEADER, data.deflated, end, struct.pack("<II", crc, size)))
