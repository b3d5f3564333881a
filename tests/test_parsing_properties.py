"""Whatever the upstream sends, the parser answers with a model or ``InvalidResponse``.

A field of the wrong type costs only that field (named in ``invalid_fields``); the rest of the
target is still exported.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import HarnessFactory
from whatsapp_support_exporter.output.families import render_target
from whatsapp_support_exporter.output.snapshot import TargetSnapshot
from whatsapp_support_exporter.upstream.onprem.support import (
    InvalidResponse,
    Support,
    parse_support,
)

FIELDS = (
    "db_engine",
    "debug_info",
    "description",
    "device_iso8601",
    "expire_timestamp",
    "free_space_data",
    "free_space_logs",
    "free_space_media_incoming",
    "lc",
    "lg",
    "multi_connect",
    "os_name",
    "os_version",
    "schema",
    "socket_conn",
    "version",
    "role",
    "shards",
    "env",
    "e2e",
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(
        [
            "2018-09-27T14:26:07",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "2024-02-30T00:00:00",
            "UP",
            "unregistered",
            "",
        ]
    )
)
timestamps = st.builds(
    lambda moment, hours, sep: moment.isoformat(sep=sep) + (f"{hours:+03d}:00" if hours else ""),
    st.datetimes(),
    st.integers(min_value=-23, max_value=23),
    st.sampled_from(["T", " "]),
)
scalars = scalars | timestamps
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
shard_like = st.lists(
    st.lists(st.integers(min_value=-(2**40), max_value=2**40), min_size=0, max_size=3), max_size=4
)
container_dicts = st.dictionaries(
    st.sampled_from(FIELDS) | st.text(max_size=12),
    json_values | shard_like,
    max_size=12,
)
cluster_dicts = st.dictionaries(
    st.text(max_size=20).map(lambda s: s + ":" if "free_space_" not in s else s),
    container_dicts | json_values,
    max_size=5,
)


def check(body: bytes) -> Support | None:
    """Parse; anything but a Support or InvalidResponse fails the test. Renders what it got."""
    try:
        support = parse_support(body)
    except InvalidResponse:
        return None
    assert isinstance(support, Support)
    snapshot = TargetSnapshot(
        name="t",
        url="http://t",
        up=True,
        support=support,
        received_at=1_780_000_000.0,
        invalid_fields=Counter(support.invalid_fields),
    )
    render_target(snapshot)  # what was accepted can also be exported
    return support


def dumps(document: Any) -> bytes:
    """The stdlib serializer: it writes integers orjson would refuse, like a real upstream might."""
    return json.dumps(document).encode()


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_any_json_document_yields_a_model_or_a_classified_error(document: Any) -> None:
    check(dumps(document))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(container_dicts)
def test_any_single_instance_support_object_yields_a_model_or_a_classified_error(
    support: dict[str, Any],
) -> None:
    check(dumps({"support": support}))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(cluster_dicts)
def test_any_cluster_support_object_yields_a_model_or_a_classified_error(
    support: dict[str, Any],
) -> None:
    check(dumps({"support": support, "meta": {"version": "v2"}}))


@settings(max_examples=150)
@given(st.sampled_from(["expire_timestamp", "device_iso8601"]), timestamps | scalars)
def test_any_timestamp_field_yields_a_model_or_a_classified_error(field: str, value: Any) -> None:
    check(dumps({"support": {field: value, "socket_conn": "UP"}}))


@settings(max_examples=150)
@given(st.binary(max_size=200))
def test_any_bytes_yield_a_model_or_a_classified_error(body: bytes) -> None:
    check(body)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b'{"support": ' * 5_000 + b"{}" + b"}" * 5_000,
        b'{"support": {"schema": ' + b'{"a": ' * 3_000 + b"1" + b"}" * 3_000 + b"}}",
        b"\xff\xfe{",
        b"",
        b"null",
        b'{"support": {"free_space_data": 1e999}}',
    ],
    ids=["array-bomb", "object-bomb", "deep-schema", "not-utf8", "empty", "null", "huge-float"],
)
def test_hostile_bodies_are_classified(body: bytes) -> None:
    check(body)


# -- per-field degradation --------------------------------------------------------------------


def single(**fields: Any) -> Support:
    return parse_support(orjson.dumps({"support": {"socket_conn": "UP", **fields}}))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("free_space_data", "lots"),
        ("free_space_data", -1),
        ("free_space_data", True),
        ("schema", "v7"),
        ("schema", {"message": "7"}),
        ("multi_connect", "yes"),
        ("expire_timestamp", "someday"),
        ("expire_timestamp", "0001-01-01T00:00:00+01:00"),
        ("device_iso8601", 1700000000),
        ("version", 2.53),
        ("role", ["coreapp"]),
        ("shards", [[0]]),
        ("shards", [[0, 2**40]]),
        ("debug_info", 15550100000),
    ],
)
def test_a_field_of_the_wrong_type_is_dropped_and_named_and_the_rest_kept(
    field: str, value: Any
) -> None:
    support = single(**{field: value, "free_space_logs": 42, "lc": "en"})
    assert support.invalid_fields == (field.removesuffix("_data"),)
    (container,) = support.containers
    assert container.fields.socket_conn == "UP"
    assert container.fields.free_space["logs"] == 42.0
    assert container.fields.lc == "en"


def test_several_wrong_fields_are_each_dropped() -> None:
    support = single(free_space_data="lots", schema="v7", lc=1, lg="US")
    assert sorted(support.invalid_fields) == ["free_space", "lc", "schema"]
    assert support.containers[0].fields.lg == "US"


def test_a_wrong_field_in_one_container_spares_the_other_containers() -> None:
    support = parse_support(
        orjson.dumps(
            {
                "support": {
                    "h1:aaa": {"socket_conn": "UP", "schema": "v7"},
                    "h2:bbb": {"socket_conn": "DN", "schema": {"message": 7}},
                    "h3:ccc": "not a container",
                }
            }
        )
    )
    assert support.clustered
    by_id = {c.container_id: c.fields for c in support.containers}
    assert set(by_id) == {"aaa", "bbb"}
    assert by_id["aaa"].schema_ is None
    assert by_id["bbb"].schema_ == {"message": 7}
    assert sorted(support.invalid_fields) == ["container", "schema"]


async def test_dropped_fields_are_counted_and_the_target_stays_up(
    harness: HarnessFactory, sim: Any
) -> None:
    inst = sim.add_instance("wa", "single")
    inst.payload = {"socket_conn": "UP", "free_space_data": "lots", "schema": "v7", "lc": "en"}
    h = harness("wa")
    await h.poll()
    await h.poll()
    text = h.metrics()
    assert 'whatsapp_up{target="wa"} 1' in text
    assert 'whatsapp_socket_connected{target="wa"} 1' in text
    assert 'whatsapp_exporter_invalid_fields_total{target="wa",field="free_space"} 2' in text
    assert 'whatsapp_exporter_invalid_fields_total{target="wa",field="schema"} 2' in text
    assert 'directory="data"' not in text
