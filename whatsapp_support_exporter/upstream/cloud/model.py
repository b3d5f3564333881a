"""The Graph API's answers about a WhatsApp Business Account and its phone numbers, as typed data.

Enum strings are kept as they come: Meta adds values, and a new one is data (a series of its
own), never an error. A field that is missing or of the wrong type drops only the series it
feeds and is named in ``invalid_fields`` (``whatsapp_exporter_invalid_fields_total``); only a
body that is no Graph object at all fails the poll (:class:`InvalidResponse`).
The fields and their meaning are described in ``docs/upstream-api.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from whatsapp_support_exporter.upstream.onprem.support import (
    InvalidResponse,
    load_json,
    parse_timestamp,
)

ACCOUNT_FIELDS = ("name", "health_status", "account_review_status", "business_verification_status")
# The platform is asked for as platform_type; an edge that calls it host_platform is read too
# (asking for a field the edge does not know would fail the whole request with error 100).
NUMBER_FIELDS = (
    "id",
    "display_phone_number",
    "verified_name",
    "quality_rating",
    "status",
    "platform_type",
    "throughput",
    "messaging_limit_tier",
    "whatsapp_business_manager_messaging_limit",
    "name_status",
    "code_verification_status",
    "account_mode",
    "last_onboarded_time",
    "health_status",
)
PLATFORM_FIELDS = ("platform_type", "host_platform")
# The newer field first: messaging_limit_tier is deprecated in its favour.
LIMIT_FIELDS = ("whatsapp_business_manager_messaging_limit", "messaging_limit_tier")
# Meta documents the newer field as a tier string; should it come as an object (as the
# messaging-limit webhook writes the tier, under current_limit), the tier is read from it.
LIMIT_KEYS = ("current_limit", "tier", "messaging_limit_tier")
# Business-initiated conversations per 24 hours of each tier; UNTIERED and unknown tiers have none.
MESSAGING_LIMITS: Mapping[str, float] = {
    "TIER_50": 50,
    "TIER_250": 250,
    "TIER_1K": 1000,
    "TIER_2K": 2000,
    "TIER_10K": 10000,
    "TIER_100K": 100000,
    "TIER_UNLIMITED": math.inf,
}
# An upper bound of the series one number and one entity can export (state sets with an
# undocumented value each, info and single-value families).
SERIES_PER_NUMBER = 42
SERIES_PER_ENTITY = 5
SERIES_PER_ACCOUNT = 48  # state sets, usage, poll counters, every field name invalid


@dataclass(frozen=True)
class Entity:
    """One entry of ``health_status.entities``: who can send, and the errors that block it."""

    entity_type: str
    entity_id: str
    can_send_message: str | None
    error_codes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Waba:
    """``GET /<WABA_ID>?fields=...``: None where the field was missing or of the wrong type."""

    name: str | None = None
    account_review_status: str | None = None
    business_verification_status: str | None = None
    can_send_message: str | None = None
    entities: tuple[Entity, ...] = ()


@dataclass(frozen=True)
class PhoneNumber:
    """One number of the ``phone_numbers`` edge; None where the field was missing or invalid."""

    id: str
    display_phone_number: str | None = None
    verified_name: str | None = None
    account_mode: str | None = None
    quality_rating: str | None = None
    status: str | None = None
    platform: str | None = None
    throughput: str | None = None
    name_status: str | None = None
    can_send_message: str | None = None
    messaging_limit_tier: str | None = None  # from the newer field when it is there
    code_verification_status: str | None = None
    last_onboarded: float | None = None  # Unix seconds

    @property
    def messaging_limit(self) -> float | None:
        if self.messaging_limit_tier is None:
            return None
        return MESSAGING_LIMITS.get(self.messaging_limit_tier)


@dataclass(frozen=True)
class Page:
    """One page of the ``phone_numbers`` edge: its numbers and the URL of the next one."""

    numbers: tuple[PhoneNumber, ...]
    next_url: str | None
    invalid_fields: tuple[str, ...] = ()


def _document(body: bytes) -> dict[str, Any]:
    document = load_json(body)
    if not isinstance(document, dict):
        raise InvalidResponse("the answer is not a JSON object")
    return document


def _string(raw: Mapping[str, Any], key: str, invalid: list[str]) -> str | None:
    """A non-empty string field; anything else is named invalid and gives None."""
    value = raw.get(key)
    if isinstance(value, str) and value:
        return value
    invalid.append(key)
    return None


def _health(
    raw: Mapping[str, Any], invalid: list[str], *, entities: bool
) -> tuple[str | None, tuple[Entity, ...]]:
    """``health_status``: the overall can_send_message and (for an account) its entities."""
    health = raw.get("health_status")
    if not isinstance(health, dict):
        invalid.append("health_status")
        return None, ()
    can_send = health.get("can_send_message")
    if not isinstance(can_send, str) or not can_send:
        invalid.append("health_status")
        can_send = None
    if not entities:
        return can_send, ()
    found: list[Entity] = []
    raw_entities = health.get("entities", [])
    if not isinstance(raw_entities, list):
        invalid.append("health_status")
        raw_entities = []
    seen: set[tuple[str, str]] = set()
    for entry in raw_entities:
        entity = _entity(entry)
        if entity is None or (entity.entity_type, entity.entity_id) in seen:
            invalid.append("health_status")
            continue
        if entity.can_send_message is None:  # kept for its errors, its state counted missing
            invalid.append("health_status")
        seen.add((entity.entity_type, entity.entity_id))
        found.append(entity)
    return can_send, tuple(found)


def _entity(entry: Any) -> Entity | None:
    if not isinstance(entry, dict):
        return None
    kind, ident, can_send = entry.get("entity_type"), entry.get("id"), entry.get("can_send_message")
    if isinstance(ident, int) and not isinstance(ident, bool):
        ident = str(ident)
    if not isinstance(kind, str) or not kind or not isinstance(ident, str) or not ident:
        return None
    codes: list[str] = []
    errors = entry.get("errors", [])
    for error in errors if isinstance(errors, list) else []:
        code = error.get("error_code") if isinstance(error, dict) else None
        if isinstance(code, int | str) and not isinstance(code, bool) and str(code):
            codes.append(str(code))
    return Entity(
        kind,
        ident,
        can_send if isinstance(can_send, str) and can_send else None,
        tuple(dict.fromkeys(codes)),
    )


def parse_account(body: bytes) -> tuple[Waba, tuple[str, ...]]:
    """The account object and the names of its fields that were missing or of the wrong type."""
    raw = _document(body)
    invalid: list[str] = []
    can_send, entities = _health(raw, invalid, entities=True)
    account = Waba(
        name=_string(raw, "name", invalid),
        account_review_status=_string(raw, "account_review_status", invalid),
        business_verification_status=_string(raw, "business_verification_status", invalid),
        can_send_message=can_send,
        entities=entities,
    )
    return account, tuple(invalid)


def parse_page(body: bytes, *, max_numbers: int | None = None) -> Page:
    """One page of ``phone_numbers``: ``{"data": [...], "paging": {"next": ...}}``.

    A number without a usable ``id`` is dropped (counted as ``id``): nothing could name it.
    More numbers than ``max_numbers`` is refused before any is validated.
    """
    raw = _document(body)
    data = raw.get("data")
    if not isinstance(data, list):
        raise InvalidResponse("no data list in the phone_numbers answer")
    if max_numbers is not None and len(data) > max_numbers:
        raise InvalidResponse(
            "the account lists more numbers than the series limit allows (--poll.max-series)"
        )
    invalid: list[str] = []
    numbers = []
    for entry in data:
        number = _number(entry, invalid)
        if number is not None:
            numbers.append(number)
    paging = raw.get("paging")
    next_url = paging.get("next") if isinstance(paging, dict) else None
    if next_url is not None and (not isinstance(next_url, str) or not next_url):
        raise InvalidResponse("paging.next is not a URL")
    return Page(tuple(numbers), next_url, tuple(invalid))


def _number(entry: Any, invalid: list[str]) -> PhoneNumber | None:
    if not isinstance(entry, dict):
        invalid.append("data")
        return None
    ident = entry.get("id")
    if isinstance(ident, int) and not isinstance(ident, bool):
        ident = str(ident)
    if not isinstance(ident, str) or not ident:
        invalid.append("id")
        return None
    can_send, _ = _health(entry, invalid, entities=False)
    return PhoneNumber(
        id=ident,
        display_phone_number=_string(entry, "display_phone_number", invalid),
        verified_name=_string(entry, "verified_name", invalid),
        account_mode=_string(entry, "account_mode", invalid),
        quality_rating=_string(entry, "quality_rating", invalid),
        status=_string(entry, "status", invalid),
        platform=_first_string(entry, PLATFORM_FIELDS, invalid),
        throughput=_throughput(entry, invalid),
        name_status=_string(entry, "name_status", invalid),
        can_send_message=can_send,
        messaging_limit_tier=_first_string(entry, LIMIT_FIELDS, invalid, inner=LIMIT_KEYS),
        code_verification_status=_string(entry, "code_verification_status", invalid),
        last_onboarded=_onboarded(entry, invalid),
    )


def _first_string(
    entry: Mapping[str, Any],
    keys: tuple[str, ...],
    invalid: list[str],
    inner: tuple[str, ...] = (),
) -> str | None:
    """The first of two names for one field that holds a string (the other may be absent).

    An object is read through its ``inner`` keys. Missing under both names counts once, under
    the first name; a wrong type counts under its own name.
    """
    found = False
    for key in keys:
        if key not in entry:
            continue
        found = True
        value = entry[key]
        if isinstance(value, dict):
            value = next((value[k] for k in inner if isinstance(value.get(k), str)), None)
        if isinstance(value, str) and value:
            return value
        invalid.append(key)
    if not found:
        invalid.append(keys[0])
    return None


def _throughput(entry: Mapping[str, Any], invalid: list[str]) -> str | None:
    throughput = entry.get("throughput")
    level = throughput.get("level") if isinstance(throughput, dict) else None
    if isinstance(level, str) and level:
        return level
    invalid.append("throughput")
    return None


def _onboarded(entry: Mapping[str, Any], invalid: list[str]) -> float | None:
    value = entry.get("last_onboarded_time")
    try:
        if isinstance(value, str):
            text = value.strip()
            # Graph writes the offset without a colon (+0000); fromisoformat wants +00:00
            if len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit():
                text = f"{text[:-2]}:{text[-2:]}"
            return parse_timestamp(text).timestamp()
        number = _percent(value)
        if number is not None:
            return number
    except (ValueError, OverflowError):
        pass
    invalid.append("last_onboarded_time")
    return None


USAGE_KINDS = ("call_count", "total_cputime", "total_time")


@dataclass(frozen=True)
class Usage:
    """The ``X-Business-Use-Case-Usage`` header: the highest use of each kind, as 0-1 of the
    limit, and the longest wait before access comes back (seconds; 0 when not blocked)."""

    ratios: tuple[tuple[str, float], ...]
    regain_seconds: float = 0.0

    @property
    def highest(self) -> float:
        return max((ratio for _, ratio in self.ratios), default=0.0)


def parse_usage(value: str | None) -> Usage | None:
    """``{"<business id>": [{"type": ..., "call_count": 28, "total_cputime": 25, "total_time": 25,
    "estimated_time_to_regain_access": 0}, ...]}`` (percentages; minutes); None if unreadable."""
    if not value:
        return None
    try:
        document = load_json(value.encode())
    except InvalidResponse:
        return None
    if not isinstance(document, dict):
        return None
    highest: dict[str, float] = {}
    regain = 0.0
    for entries in document.values():
        for entry in entries if isinstance(entries, list) else [entries]:
            if not isinstance(entry, dict):
                continue
            for kind in USAGE_KINDS:
                percent = _percent(entry.get(kind))
                if percent is not None:
                    highest[kind] = max(highest.get(kind, 0.0), percent)
            minutes = _percent(entry.get("estimated_time_to_regain_access"))
            if minutes is not None:
                regain = max(regain, minutes * 60)
    if not highest:
        return None
    ratios = tuple(
        (kind, min(highest[kind], 100.0) / 100) for kind in USAGE_KINDS if kind in highest
    )
    return Usage(ratios, regain)


def _percent(value: Any) -> float | None:
    """A finite, non-negative number (bool is no number here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None
