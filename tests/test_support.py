"""Parsing /v1/support: the shapes, the edge cases the docs leave open, and per-field degradation."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from whatsapp_support_exporter.upstream.onprem.support import (
    InvalidResponse,
    Support,
    parse_support,
)


def parse(support: object) -> Support:
    return parse_support(orjson.dumps({"support": support}))


def test_single_instance_has_one_container_without_host() -> None:
    result = parse_support(orjson.dumps({"support": {"socket_conn": "UP", "version": "v2.53.2"}}))
    assert not result.clustered
    (container,) = result.containers
    assert container.host is None and container.container_id is None
    assert container.fields.socket_conn == "UP"


def test_cluster_keys_split_at_the_last_colon() -> None:
    result = parse_support(
        orjson.dumps(
            {
                "support": {
                    "wa-core.example:8443:abc123": {"role": "coreapp", "shards": [[3, 3]]},
                    "master-0:def456": {"role": "primary_master", "shards": [[-1, -1]]},
                }
            }
        )
    )
    assert result.clustered
    assert [(c.host, c.container_id) for c in result.containers] == [
        ("wa-core.example:8443", "abc123"),
        ("master-0", "def456"),
    ]


def test_shard_pairs_are_inclusive_ranges() -> None:
    result = parse(
        {"h:1": {"shards": [[2, 5]]}, "h:2": {"shards": [[-1, -1], [0, 0]]}, "h:3": {"shards": []}}
    )
    owned = [c.fields.shards for c in result.containers]
    assert owned == [frozenset({2, 3, 4, 5}), frozenset({-1, 0}), frozenset()]


def test_expire_timestamp_without_offset_is_utc_and_with_offset_is_respected() -> None:
    naive = parse({"expire_timestamp": "2018-09-27T14:26:07"}).containers[0].fields
    offset = parse({"expire_timestamp": "2018-09-27T16:26:07+02:00"}).containers[0].fields
    assert naive.expire_timestamp == datetime(2018, 9, 27, 14, 26, 7, tzinfo=UTC)
    assert offset.expire_timestamp is not None and naive.expire_timestamp is not None
    assert offset.expire_timestamp.timestamp() == naive.expire_timestamp.timestamp()


def test_free_space_near_two_to_the_63_survives_and_any_directory_is_kept() -> None:
    fields = (
        parse({"free_space_data": 9223372036853727000, "free_space_backups": 1024})
        .containers[0]
        .fields
    )
    assert fields.free_space == {"data": 9.223372036853727e18, "backups": 1024.0}


def test_phone_number_is_reduced_to_registered_and_env_is_not_kept() -> None:
    registered = (
        parse({"debug_info": "+15550100", "env": ["WA_DB_PASSWORD=x"]}).containers[0].fields
    )
    unregistered = parse({"debug_info": "unregistered"}).containers[0].fields
    assert registered.registered is True and unregistered.registered is False
    assert "+15550100" not in repr(registered) and "WA_DB_PASSWORD" not in repr(registered)


@pytest.mark.parametrize(
    ("field", "bad", "counted_as"),
    [
        ("free_space_data", "lots", "free_space"),
        ("schema", "v7", "schema"),
        ("schema", {"message": "seven"}, "schema"),
        ("shards", [[5, 2]], "shards"),
        ("shards", [[0, 10**9]], "shards"),
        ("expire_timestamp", "next tuesday", "expire_timestamp"),
        ("multi_connect", "yes", "multi_connect"),
        ("socket_conn", 1, "socket_conn"),
        ("free_space_logs", True, "free_space"),
    ],
)
def test_a_wrong_typed_field_is_dropped_and_named_while_the_rest_survives(
    field: str, bad: object, counted_as: str
) -> None:
    result = parse({"socket_conn": "UP", "version": "v2"} | {field: bad})
    fields = result.containers[0].fields
    assert result.invalid_fields == (counted_as,)
    assert fields.version == "v2"


def test_unknown_fields_are_ignored() -> None:
    result = parse({"brand_new_field": {"x": 1}, "socket_conn": "SC"})
    assert result.containers[0].fields.socket_conn == "SC"
    assert result.invalid_fields == ()


@pytest.mark.parametrize(
    "body",
    [
        b"<html>502 Bad Gateway</html>",
        b"",
        b'{"meta": {"api_status": "stable"}}',
        b'{"support": "nope"}',
        b"[1, 2, 3]",
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=["html", "empty", "no-support", "support-not-object", "array", "nesting-bomb"],
)
def test_a_body_that_is_not_a_support_document_is_an_invalid_response(body: bytes) -> None:
    with pytest.raises(InvalidResponse):
        parse_support(body)


def test_a_cluster_entry_that_is_not_an_object_is_dropped_and_counted() -> None:
    result = parse({"h:1": {"socket_conn": "UP"}, "h:2": "garbage"})
    assert len(result.containers) == 1
    assert result.invalid_fields == ("container",)
