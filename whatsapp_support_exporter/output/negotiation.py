"""Which exposition format and encoding a scraper asked for (``Accept``, ``Accept-Encoding``).

Follows what Prometheus' client libraries answer: OpenMetrics 1.0.0 or 0.0.1, Prometheus text
1.0.0 or 0.0.4, and 0.0.4 when nothing we serve was asked for. Every metric and label name we
export is valid in the legacy character set, so the body is the same under every ``escaping``
scheme; the chosen scheme is only echoed in the Content-Type, as client_python does.
"""

from __future__ import annotations

from dataclasses import dataclass

TEXT_0_0_4 = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_0_0_1 = "application/openmetrics-text; version=0.0.1; charset=utf-8"
_ESCAPINGS = ("allow-utf-8", "underscores", "dots", "values")


@dataclass(frozen=True)
class Format:
    """What to render (``openmetrics``) and the exact Content-Type to answer with."""

    openmetrics: bool
    content_type: str


TEXT = Format(openmetrics=False, content_type=TEXT_0_0_4)


@dataclass(frozen=True)
class _Range:
    media: str  # lower case, e.g. "text/plain", "text/*", "*/*"
    params: dict[str, str]
    q: float


def _parse(header: str) -> list[_Range]:
    """The media ranges, best first: by q, then specific before wildcard, then in order."""
    ranges: list[tuple[float, int, int, _Range]] = []
    for index, part in enumerate(header.split(",")):
        media, *raw_params = part.split(";")
        media = media.strip().lower()
        if not media:
            continue
        params: dict[str, str] = {}
        q = 1.0
        for raw in raw_params:
            key, sep, value = raw.partition("=")
            key, value = key.strip().lower(), value.strip().strip('"')
            if not sep:
                continue
            if key == "q":
                try:
                    q = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    q = 0.0  # as Go's parser does: an unreadable weight refuses the range
            else:
                params[key] = value
        wildcards = media.count("*")
        ranges.append((-q, wildcards, index, _Range(media, params, q)))
    return [r for *_, r in sorted(ranges, key=lambda item: item[:3])]


def _escaping(params: dict[str, str]) -> str:
    value = params.get("escaping", "")
    return value if value in _ESCAPINGS else "underscores"


def _exact(wanted: _Range) -> Format | None:
    """The format a concrete media range names, or None if we do not serve it."""
    version = wanted.params.get("version", "")
    if wanted.media == "application/openmetrics-text":
        if version in ("", "1.0.0"):
            return Format(
                True,
                "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping="
                + _escaping(wanted.params),
            )
        if version == "0.0.1":
            return Format(True, OPENMETRICS_0_0_1)
    elif wanted.media == "text/plain":
        if version in ("", "0.0.4"):
            return TEXT
        if version == "1.0.0":
            return Format(
                False,
                "text/plain; version=1.0.0; charset=utf-8; escaping=" + _escaping(wanted.params),
            )
    return None


# What a wildcard gets, in our order of preference (0.0.4 first, as client_python answers */*).
_BY_WILDCARD = (
    (TEXT, "text/plain", "0.0.4"),
    (
        Format(
            True, "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"
        ),
        "application/openmetrics-text",
        "1.0.0",
    ),
)


def choose(accept: str) -> Format:
    """The best format the Accept header allows; 0.0.4 text when it allows none we serve.

    ``q=0`` refuses a range: a wildcard then picks a format that was not refused.
    """
    ranges = _parse(accept or "")
    refused = {(r.media, r.params.get("version", "")) for r in ranges if r.q == 0}
    for wanted in ranges:
        if wanted.q == 0:
            continue
        if wanted.media.endswith("/*"):
            prefix = "" if wanted.media == "*/*" else wanted.media[:-1]
            for offered, media, version in _BY_WILDCARD:
                if media.startswith(prefix) and not refused & {(media, ""), (media, version)}:
                    return offered
            continue
        fmt = _exact(wanted)
        if fmt is not None:
            return fmt
    return TEXT


def wants_gzip(accept_encoding: str) -> bool:
    """True when gzip is acceptable and not less preferred than an explicitly weighted identity."""
    weights: dict[str, float] = {}
    for part in (accept_encoding or "").split(","):
        coding, *raw_params = part.split(";")
        coding = coding.strip().lower()
        if not coding:
            continue
        q = 1.0
        for raw in raw_params:
            key, _, value = raw.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = min(max(float(value.strip()), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        weights[coding] = q
    gzip = weights.get("gzip", weights.get("x-gzip", weights.get("*", 0.0)))
    return gzip > 0 and gzip >= weights.get("identity", 0.0)
