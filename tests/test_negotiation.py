"""Content negotiation: each scraper gets a format it parses, with the exact Content-Type."""

from __future__ import annotations

import pytest

from whatsapp_support_exporter.output.negotiation import Format, choose, wants_gzip

OM_1 = "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"
OM_1_UTF8 = "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=allow-utf-8"
OM_0_0_1 = "application/openmetrics-text; version=0.0.1; charset=utf-8"
TEXT_0_0_4 = "text/plain; version=0.0.4; charset=utf-8"
TEXT_1_UTF8 = "text/plain; version=1.0.0; charset=utf-8; escaping=allow-utf-8"

# The headers Prometheus sends (scrape/scrape.go acceptHeader with the default scrape protocols).
PROMETHEUS_2_OLD = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
PROMETHEUS_2_49 = (
    "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;"
    "q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)
PROMETHEUS_3 = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)
PROMETHEUS_3_PROTO_FIRST = (
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;"
    "q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
)
PROMETHEUS_3_TEXT_ONLY = "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.6,*/*;q=0.5"


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        pytest.param(PROMETHEUS_2_OLD, OM_1, id="prometheus-2.x-before-scrape-protocols"),
        pytest.param(PROMETHEUS_2_49, OM_1, id="prometheus-2.49-scrape-protocols"),
        pytest.param(PROMETHEUS_3, OM_1_UTF8, id="prometheus-3.x-default"),
        pytest.param(PROMETHEUS_3_PROTO_FIRST, OM_1_UTF8, id="prometheus-3.x-protobuf-first"),
        pytest.param(PROMETHEUS_3_TEXT_ONLY, TEXT_1_UTF8, id="prometheus-3.x-text-1.0.0"),
        pytest.param(
            "application/openmetrics-text;version=0.0.1", OM_0_0_1, id="openmetrics-0.0.1"
        ),
        pytest.param("application/openmetrics-text", OM_1, id="openmetrics-unversioned"),
        pytest.param("text/plain;version=0.0.4", TEXT_0_0_4, id="text-0.0.4"),
        pytest.param("", TEXT_0_0_4, id="no-accept-header"),
        pytest.param("*/*", TEXT_0_0_4, id="curl"),
        pytest.param("text/html,application/xhtml+xml", TEXT_0_0_4, id="browser"),
    ],
)
def test_scrapers_get_the_format_they_prefer(accept: str, content_type: str) -> None:
    chosen = choose(accept)
    assert chosen.content_type == content_type
    assert chosen.openmetrics == content_type.startswith("application/openmetrics-text")


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        pytest.param(
            "application/openmetrics-text;q=0,text/plain;version=0.0.4",
            Format(False, TEXT_0_0_4),
            id="openmetrics-refused",
        ),
        pytest.param(
            "text/plain;q=0,*/*;q=0.1", Format(True, OM_1), id="text-refused-wildcard-gives-om"
        ),
        pytest.param(
            "text/plain;version=0.0.4;q=0.2,application/openmetrics-text;version=1.0.0;q=0.9",
            Format(True, OM_1),
            id="higher-q-wins-over-order",
        ),
        pytest.param(
            "application/openmetrics-text;version=2.0.0,text/plain;version=0.0.4;q=0.1",
            Format(False, TEXT_0_0_4),
            id="unserved-version-skipped",
        ),
        pytest.param(
            "application/openmetrics-text;version=1.0.0;escaping=bogus",
            Format(True, OM_1),
            id="unknown-escaping-is-underscores",
        ),
        pytest.param(
            "Application/OpenMetrics-Text ; Version=1.0.0 ; q=bad, text/plain",
            Format(False, TEXT_0_0_4),
            id="unreadable-q-refuses",
        ),
    ],
)
def test_q_values_and_refusals_are_honoured(accept: str, expected: Format) -> None:
    assert choose(accept) == expected


@pytest.mark.parametrize(
    ("accept_encoding", "gzip"),
    [
        ("gzip", True),  # Prometheus with compression (the default)
        ("identity", False),  # Prometheus with enable_compression: false
        ("", False),
        ("gzip;q=0", False),
        ("gzip; q=0.0, deflate", False),
        ("*", True),
        ("*;q=0", False),
        ("*;q=0.5, gzip;q=0", False),
        ("br, gzip;q=0.8", True),
        ("gzip;q=0.1, identity;q=0.9", False),
        ("x-gzip", True),
        ("GZIP ; Q=1", True),
    ],
)
def test_gzip_only_when_acceptable(accept_encoding: str, gzip: bool) -> None:
    assert wants_gzip(accept_encoding) is gzip
