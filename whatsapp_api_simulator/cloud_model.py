"""The state behind the simulated Graph API: accounts, their numbers, scripted change, usage.

Kept apart from the HTTP side (`cloud_app.py`) so tests and benchmarks can build and mutate
accounts without a server. Everything that moves derives from the clock handed in, so a fake
clock makes it deterministic. Field names and values follow Meta's WhatsApp Business Management
API as `docs/upstream-api.md` summarises it; `docs/simulator.md` has the tour.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

__all__ = [
    "ACCOUNT_FIELDS",
    "ACCOUNT_MODES",
    "ACCOUNT_REVIEW_STATUSES",
    "BUSINESS_VERIFICATION_STATUSES",
    "CAN_SEND",
    "CODE_VERIFICATION_STATUSES",
    "MESSAGING_TIERS",
    "MISSING",
    "NAME_STATUSES",
    "NUMBER_FIELDS",
    "PLATFORMS",
    "QUALITY_RATINGS",
    "STATUSES",
    "THROUGHPUT_LEVELS",
    "Account",
    "Entity",
    "GraphFault",
    "PhoneNumber",
    "Script",
    "blocked",
    "graph_time",
    "limited",
]

QUALITY_RATINGS = ("GREEN", "YELLOW", "RED", "NA", "UNKNOWN")
STATUSES = (
    "PENDING",
    "DELETED",
    "MIGRATED",
    "BANNED",
    "RESTRICTED",
    "RATE_LIMITED",
    "FLAGGED",
    "CONNECTED",
    "DISCONNECTED",
    "UNKNOWN",
    "UNVERIFIED",
)
PLATFORMS = ("CLOUD_API", "ON_PREMISE", "NOT_APPLICABLE")
THROUGHPUT_LEVELS = ("STANDARD", "HIGH", "NOT_APPLICABLE")
MESSAGING_TIERS = (
    "TIER_50",
    "TIER_250",
    "TIER_1K",
    "TIER_2K",
    "TIER_10K",
    "TIER_100K",
    "TIER_UNLIMITED",
    "UNTIERED",
)
NAME_STATUSES = (
    "APPROVED",
    "AVAILABLE_WITHOUT_REVIEW",
    "DECLINED",
    "EXPIRED",
    "PENDING_REVIEW",
    "NONE",
    "NON_EXISTS",
)
CODE_VERIFICATION_STATUSES = ("VERIFIED", "NOT_VERIFIED", "EXPIRED", "UNVERIFIED")
ACCOUNT_MODES = ("LIVE", "SANDBOX")
CAN_SEND = ("AVAILABLE", "LIMITED", "BLOCKED")
ACCOUNT_REVIEW_STATUSES = ("APPROVED", "PENDING", "REJECTED")
BUSINESS_VERIFICATION_STATUSES = (
    "verified",
    "expired",
    "failed",
    "ineligible",
    "not_verified",
    "pending",
    "pending_need_more_info",
    "pending_submission",
    "rejected",
    "revoked",
)
# Fields a request may name; anything else is left out of the answer (or refused, strict mode).
ACCOUNT_FIELDS: Final = frozenset(
    {"id", "name", "health_status", "account_review_status", "business_verification_status"}
)
NUMBER_FIELDS: Final = frozenset(
    {
        "id",
        "display_phone_number",
        "verified_name",
        "quality_rating",
        "status",
        "platform_type",
        "host_platform",
        "throughput",
        "messaging_limit_tier",
        "whatsapp_business_manager_messaging_limit",
        "name_status",
        "code_verification_status",
        "account_mode",
        "last_onboarded_time",
        "health_status",
    }
)
# What Graph answers when `fields` is not given.
DEFAULT_ACCOUNT_FIELDS = ("id", "name")
DEFAULT_NUMBER_FIELDS = (
    "verified_name",
    "code_verification_status",
    "display_phone_number",
    "quality_rating",
    "platform_type",
    "throughput",
    "id",
)
_WORST = {"AVAILABLE": 0, "LIMITED": 1, "BLOCKED": 2}


class _Missing:
    """The sentinel of `overrides`: drop the field from the answer."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


def graph_time(timestamp: float) -> str:
    """A time as Graph writes it: `2023-08-22T19:05:34+0000`."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


@dataclass
class Entity:
    """The `health_status` of one entity: whether it can send, and why not."""

    can_send_message: str = "AVAILABLE"
    errors: list[dict[str, Any]] = field(default_factory=list)
    additional_info: list[str] = field(default_factory=list)

    def document(self, entity_type: str, entity_id: str) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "entity_type": entity_type,
            "id": entity_id,
            "can_send_message": self.can_send_message,
        }
        if self.errors:
            doc["errors"] = self.errors
        if self.additional_info:
            doc["additional_info"] = self.additional_info
        return doc


def blocked(code: int = 141002, description: str | None = None) -> Entity:
    """A BLOCKED entity with one error, as Meta lists them."""
    return Entity(
        "BLOCKED",
        errors=[
            {
                "error_code": code,
                "error_description": description or "The account is not allowed to send.",
                "possible_solution": "See the WhatsApp Manager for the steps to resolve it.",
            }
        ],
    )


def limited(info: str = "Your display name has not been approved yet.") -> Entity:
    """A LIMITED entity with the reason in `additional_info`."""
    return Entity("LIMITED", additional_info=[info])


def _overall(entities: Iterable[dict[str, Any]]) -> str:
    """BLOCKED if any entity is, else LIMITED if any is, else AVAILABLE (Meta's rule)."""
    worst = max((_WORST.get(str(e.get("can_send_message")), 0) for e in entities), default=0)
    return CAN_SEND[worst]


@dataclass(frozen=True)
class Script:
    """Scheduled change of a number: `steps` are (seconds after `start`, field changes).

    With `period` the steps repeat every `period` seconds; without, the last step stays.
    Applied lazily at each request from the simulator's clock, so a fake clock drives it.
    """

    start: float
    steps: tuple[tuple[float, Mapping[str, Any]], ...]
    period: float | None = None

    def position(self, now: float) -> tuple[int, int]:
        """(cycle, step index) in force at `now`; (-1, -1) before the first step."""
        elapsed = now - self.start
        if elapsed < self.steps[0][0]:
            return (-1, -1)
        cycle = 0.0
        if self.period:
            cycle, elapsed = divmod(elapsed, self.period)
        index = 0
        for i, (at, _) in enumerate(self.steps):
            if at <= elapsed:
                index = i
        return (int(cycle), index)


@dataclass
class PhoneNumber:
    """One phone number of an account; tests mutate the attributes between requests.

    `messaging_limit_tier` / `business_manager_limit` (`whatsapp_business_manager_messaging_limit`)
    set to None leave that field out. `overrides` replaces a field's value verbatim (a wrong
    type, say) or drops it with `MISSING`. `on_change` is called after each scripted step (the
    demo can unregister the On-Premises client of a number that migrated, say).
    """

    id: str
    display_phone_number: str
    verified_name: str
    quality_rating: str = "GREEN"
    status: str = "CONNECTED"
    platform_type: str = "CLOUD_API"
    throughput: str = "STANDARD"
    messaging_limit_tier: str | None = "TIER_1K"
    business_manager_limit: str | None = "TIER_1K"
    name_status: str = "APPROVED"
    code_verification_status: str = "VERIFIED"
    account_mode: str = "LIVE"
    last_onboarded_time: float = 1_692_731_134.0
    health: Entity = field(default_factory=Entity)
    overrides: dict[str, Any] = field(default_factory=dict)
    script: Script | None = None
    on_change: Callable[[PhoneNumber], None] | None = field(default=None, repr=False)
    _applied: tuple[int, int] = field(default=(-1, -1), repr=False, compare=False)

    def tick(self, now: float) -> None:
        """Apply the script's step in force at `now`, once per step (manual edits then stick)."""
        if self.script is None:
            return
        position = self.script.position(now)
        if position == self._applied or position[1] < 0:
            return
        self._applied = position
        for name, value in self.script.steps[position[1]][1].items():
            setattr(self, name, value)
        if self.on_change is not None:
            self.on_change(self)

    def value(self, name: str, account: Account) -> Any:
        """The JSON value of one field, before `overrides`."""
        if name in ("platform_type", "host_platform"):
            return self.platform_type
        if name == "throughput":
            return {"level": self.throughput}
        if name == "whatsapp_business_manager_messaging_limit":
            return self.business_manager_limit
        if name == "last_onboarded_time":
            return graph_time(self.last_onboarded_time)
        if name == "health_status":
            return account.number_health(self)
        return getattr(self, name)

    def document(self, fields: Iterable[str], account: Account) -> dict[str, Any]:
        """The number as Graph answers it for these fields (`id` always included)."""
        doc: dict[str, Any] = {}
        for name in fields:
            if name not in NUMBER_FIELDS:
                continue
            if name in ("platform_type", "host_platform"):
                name = account.platform_field
            if name in self.overrides:
                if self.overrides[name] is not MISSING:
                    doc[name] = self.overrides[name]
                continue
            value = self.value(name, account)
            if value is not None:
                doc[name] = value
        doc.setdefault("id", self.id)
        return doc


@dataclass
class GraphFault:
    """One injected misbehaviour, for the next `count` requests (None: until removed).

    `error` answers that Graph error code (HTTP status from the code, or `status`); `status`
    alone answers that HTTP status with a body that is not Graph's; `hang` never answers;
    `body` is sent verbatim with 200; `body_size` streams a 200 body that large. `endpoint`
    (`account`, `phone_numbers`, `phone_number`) limits it to one kind of request. A rate-limit
    code sets `estimated_time_to_regain_access` to `regain_minutes` in the usage header.
    `latency` waits that many seconds first; alone, the real answer follows (a slow upstream).
    """

    error: int | None = None
    subcode: int | None = None
    status: int | None = None
    hang: bool = False
    body: bytes | None = None
    body_size: int | None = None
    count: int | None = 1
    endpoint: str | None = None
    regain_minutes: int = 5
    latency: float = 0.0

    @property
    def answers(self) -> bool:
        """Whether it replaces the answer (not only delays it)."""
        return (
            self.hang
            or self.error is not None
            or self.status is not None
            or self.body is not None
            or self.body_size is not None
        )

    def matches(self, endpoint: str) -> bool:
        return (self.count is None or self.count > 0) and self.endpoint in (None, endpoint)


class Account:
    """A WhatsApp Business Account (WABA): its fields, numbers, usage and scheduled faults.

    Attributes tests set: `name`, `account_review_status`, `business_verification_status`,
    `waba_health`/`business_health`/`app_health` (`Entity`), `numbers`, `tokens` (accepted
    tokens of this account only; None: the simulator's), `platform_field` (`host_platform` to
    use the other name), `page_size_cap`, `endless_pages`, `next_host`, `overrides`,
    `rate_limit` (calls per hour; usage is reported against it), `enforce_rate_limit`,
    `rate_limit_code`, `extra_entities` (more `health_status` entities, verbatim: a
    `MESSAGE_TEMPLATE`, say) and `faults`.
    """

    def __init__(
        self,
        waba_id: str,
        name: str,
        *,
        label: str | None = None,
        business_id: str,
        app_id: str,
        numbers: list[PhoneNumber] | None = None,
        rate_limit: int = 200,
    ) -> None:
        self.waba_id = waba_id
        self.name = name
        self.label = label or waba_id  # what a configuration would call it (`name=waba_id`)
        self.business_id = business_id
        self.app_id = app_id
        self.numbers: list[PhoneNumber] = numbers or []
        self.account_review_status = "APPROVED"
        self.business_verification_status = "verified"
        self.waba_health = Entity()
        self.business_health = Entity()
        self.app_health = Entity()
        self.tokens: set[str] | None = None
        self.platform_field = "platform_type"
        self.page_size_cap: int | None = None
        self.endless_pages = False
        self.next_host: str | None = None
        self.overrides: dict[str, Any] = {}
        self.rate_limit = rate_limit
        self.enforce_rate_limit = True
        self.rate_limit_code = 80007
        self.extra_entities: list[dict[str, Any]] = []
        self.faults: list[GraphFault] = []  # before the simulator's; see `GraphSimulator.inject`
        # Requests by endpoint ("account", "phone_numbers", "phone_number"), plus "rejected".
        self.requests: collections.Counter[str] = collections.Counter()
        self.calls = 0  # calls counted in the current hour window
        self.window = -1
        self.limited_until = 0.0

    def number(self, which: int | str) -> PhoneNumber:
        """A number by position or by id (KeyError if unknown)."""
        if isinstance(which, int):
            return self.numbers[which]
        for number in self.numbers:
            if number.id == which:
                return number
        raise KeyError(which)

    def tick(self, now: float) -> None:
        """Apply the numbers' scripts and start a new usage window on the hour."""
        for number in self.numbers:
            number.tick(now)
        window = int(now // 3600)
        if window != self.window:
            self.window = window
            self.calls = 0

    # ------------------------------------------------------------------ usage

    def count_call(self, now: float) -> bool:
        """Count one call; False when it goes over the hourly limit (the call is refused)."""
        self.tick(now)
        self.calls += 1
        if self.enforce_rate_limit and self.calls > self.rate_limit:
            self.limited_until = (self.window + 1) * 3600
            return False
        return True

    def use(self, calls: int) -> None:
        """Pretend `calls` calls were already made this hour (usage near the limit, say)."""
        self.calls = calls

    def usage(self, now: float, regain_minutes: int = 0) -> dict[str, list[dict[str, Any]]]:
        """The `X-Business-Use-Case-Usage` value: percentages of the limit, keyed by business."""
        pct = self.calls * 100 / max(1, self.rate_limit)
        if self.limited_until > now:
            regain_minutes = max(regain_minutes, math.ceil((self.limited_until - now) / 60))
        entry = {
            "type": "whatsapp_business_management",
            "call_count": min(100, math.ceil(pct)),
            "total_cputime": min(100, math.ceil(pct * 0.4)),
            "total_time": min(100, math.ceil(pct * 0.6)),
            "estimated_time_to_regain_access": regain_minutes,
        }
        return {self.business_id: [entry]}

    # ------------------------------------------------------------------ documents

    def _entities(self) -> list[dict[str, Any]]:
        return [
            self.waba_health.document("WABA", self.waba_id),
            self.business_health.document("BUSINESS", self.business_id),
            self.app_health.document("APP", self.app_id),
        ]

    def number_health(self, number: PhoneNumber) -> dict[str, Any]:
        """A number's `health_status`: the number itself and what it depends on."""
        entities = [number.health.document("PHONE_NUMBER", number.id), *self._entities()]
        return {"can_send_message": _overall(entities), "entities": entities}

    def health(self) -> dict[str, Any]:
        """The account's `health_status`: every number, the WABA, the business and the app."""
        entities = [n.health.document("PHONE_NUMBER", n.id) for n in self.numbers]
        entities += self._entities()
        entities += self.extra_entities
        return {"can_send_message": _overall(entities), "entities": entities}

    def document(self, fields: Iterable[str]) -> dict[str, Any]:
        """The account as Graph answers `GET /<WABA_ID>?fields=...`."""
        doc: dict[str, Any] = {}
        for name in fields:
            if name not in ACCOUNT_FIELDS:
                continue
            if name in self.overrides:
                if self.overrides[name] is not MISSING:
                    doc[name] = self.overrides[name]
                continue
            if name == "health_status":
                doc[name] = self.health()
            elif name == "id":
                doc[name] = self.waba_id
            else:
                doc[name] = getattr(self, name)
        doc.setdefault("id", self.waba_id)
        return doc
