"""The Cloud API's families: an account's series, rendered once per change of its snapshot.

Every series has ``account`` (the configured name) first. Series of one account::

    whatsapp_cloud_up{account="acme"} 1
    whatsapp_cloud_can_send_message{account="acme",status="AVAILABLE"} 0   (... every state)
    whatsapp_cloud_phone_number_quality{account="acme",phone_number_id="1065...",quality="GREEN"} 1
    whatsapp_cloud_phone_number_messaging_limit{account="acme",phone_number_id="1065..."} 1000
    whatsapp_cloud_api_usage_ratio{account="acme",kind="call_count"} 0.28

State sets list every documented state (0 or 1) and an undocumented value as a series of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from whatsapp_support_exporter.output.family import (
    COUNTER,
    GAUGE,
    INVALID_FIELDS,
    Family,
    Lines,
    Sample,
    escape,
)
from whatsapp_support_exporter.output.snapshot import AccountSnapshot
from whatsapp_support_exporter.upstream.cloud.model import PhoneNumber
from whatsapp_support_exporter.upstream.errors import Reason

CAN_SEND_STATES = ("AVAILABLE", "LIMITED", "BLOCKED")
QUALITY_RATINGS = ("GREEN", "YELLOW", "RED", "NA", "UNKNOWN")
NUMBER_STATUSES = (
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
NAME_STATUSES = (
    "APPROVED",
    "AVAILABLE_WITHOUT_REVIEW",
    "DECLINED",
    "EXPIRED",
    "PENDING_REVIEW",
    "NONE",
    "NON_EXISTS",
)
USAGE_KINDS = ("call_count", "total_cputime", "total_time")
ERROR_REASONS = tuple(Reason)

CLOUD_UP = Family(
    "whatsapp_cloud_up",
    GAUGE,
    "1 if the last poll of the Cloud API account worked (every request of it), else 0.",
)
ACCOUNT_INFO = Family(
    "whatsapp_cloud_account_info",
    GAUGE,
    "The WhatsApp Business Account; value 1.",
    ("waba_id", "name", "account_review_status", "business_verification_status"),
)
CAN_SEND = Family(
    "whatsapp_cloud_can_send_message",
    GAUGE,
    "The account's overall health_status.can_send_message: 1 for the current status.",
    ("status",),
)
ENTITY_CAN_SEND = Family(
    "whatsapp_cloud_entity_can_send_message",
    GAUGE,
    "can_send_message of each entity of the account's health_status: 1 for the current status.",
    ("entity_type", "entity_id", "status"),
)
ENTITY_ERROR = Family(
    "whatsapp_cloud_entity_error_info",
    GAUGE,
    "An error listed for an entity of the account's health_status; value 1.",
    ("entity_type", "entity_id", "error_code"),
)
NUMBER_INFO = Family(
    "whatsapp_cloud_phone_number_info",
    GAUGE,
    "A phone number of the account; value 1.",
    ("phone_number_id", "display_phone_number", "verified_name", "account_mode"),
)
_NUMBER_STATE_SETS: tuple[tuple[Family, tuple[str, ...], Callable[[PhoneNumber], str | None]], ...]
_NUMBER_STATE_SETS = (
    (
        Family(
            "whatsapp_cloud_phone_number_quality",
            GAUGE,
            "quality_rating of the phone number: 1 for the current rating.",
            ("phone_number_id", "quality"),
        ),
        QUALITY_RATINGS,
        lambda n: n.quality_rating,
    ),
    (
        Family(
            "whatsapp_cloud_phone_number_status",
            GAUGE,
            "status of the phone number (CONNECTED to send and receive): 1 for the current one.",
            ("phone_number_id", "status"),
        ),
        NUMBER_STATUSES,
        lambda n: n.status,
    ),
    (
        Family(
            "whatsapp_cloud_phone_number_platform",
            GAUGE,
            "platform_type (or host_platform) of the phone number: 1 for the current platform.",
            ("phone_number_id", "platform"),
        ),
        PLATFORMS,
        lambda n: n.platform,
    ),
    (
        Family(
            "whatsapp_cloud_phone_number_throughput",
            GAUGE,
            "throughput.level of the phone number: 1 for the current level.",
            ("phone_number_id", "level"),
        ),
        THROUGHPUT_LEVELS,
        lambda n: n.throughput,
    ),
    (
        Family(
            "whatsapp_cloud_phone_number_name_status",
            GAUGE,
            "name_status of the phone number's display name: 1 for the current status.",
            ("phone_number_id", "status"),
        ),
        NAME_STATUSES,
        lambda n: n.name_status,
    ),
    (
        Family(
            "whatsapp_cloud_phone_number_can_send_message",
            GAUGE,
            "The phone number's own health_status.can_send_message: 1 for the current status.",
            ("phone_number_id", "status"),
        ),
        CAN_SEND_STATES,
        lambda n: n.can_send_message,
    ),
)
MESSAGING_LIMIT = Family(
    "whatsapp_cloud_phone_number_messaging_limit",
    GAUGE,
    "Business-initiated conversations per 24 hours the number may start (messaging limit tier;"
    " +Inf when unlimited).",
    ("phone_number_id",),
)
CODE_VERIFIED = Family(
    "whatsapp_cloud_phone_number_code_verified",
    GAUGE,
    "1 when code_verification_status is VERIFIED, else 0.",
    ("phone_number_id",),
)
LAST_ONBOARDED = Family(
    "whatsapp_cloud_phone_number_last_onboarded_timestamp_seconds",
    GAUGE,
    "When the phone number was last onboarded (last_onboarded_time).",
    ("phone_number_id",),
)
USAGE_RATIO = Family(
    "whatsapp_cloud_api_usage_ratio",
    GAUGE,
    "Highest use of the Graph API's rate limit of each kind in the last"
    " X-Business-Use-Case-Usage header, 0 to 1.",
    ("kind",),
)
CLOUD_POLL_DURATION = Family(
    "whatsapp_exporter_cloud_poll_duration_seconds",
    GAUGE,
    "How long the last poll of the account took (every request and page). Data is polled on"
    " the exporter's own schedule, not at scrape time.",
)
CLOUD_LAST_SUCCESS = Family(
    "whatsapp_exporter_cloud_last_success_timestamp_seconds",
    GAUGE,
    "When the account was last polled well.",
)
CLOUD_POLLS = Family("whatsapp_exporter_cloud_polls_total", COUNTER, "Polls of the account made.")
CLOUD_POLL_ERRORS = Family(
    "whatsapp_exporter_cloud_poll_errors_total",
    COUNTER,
    "Failed polls of the account by reason.",
    ("reason",),
)

# Exposition order: the order of this table (after the On-Premises families).
CLOUD_FAMILIES = (
    CLOUD_UP,
    ACCOUNT_INFO,
    CAN_SEND,
    ENTITY_CAN_SEND,
    ENTITY_ERROR,
    NUMBER_INFO,
    *(family for family, _, _ in _NUMBER_STATE_SETS),
    MESSAGING_LIMIT,
    CODE_VERIFIED,
    LAST_ONBOARDED,
    USAGE_RATIO,
    CLOUD_POLL_DURATION,
    CLOUD_LAST_SUCCESS,
    CLOUD_POLLS,
    CLOUD_POLL_ERRORS,
)


def _states(prefix: tuple[str, ...], known: tuple[str, ...], current: str) -> list[Sample]:
    """A state set after some labels: every documented state, and an undocumented current."""
    samples: list[Sample] = [((*prefix, s), 1 if s == current else 0) for s in known]
    if current not in known:
        samples.append(((*prefix, current), 1))
    return samples


def _number_samples(numbers: Sequence[PhoneNumber]) -> list[tuple[Family, list[Sample]]]:
    info: list[Sample] = []
    limits: list[Sample] = []
    verified: list[Sample] = []
    onboarded: list[Sample] = []
    state_sets: list[list[Sample]] = [[] for _ in _NUMBER_STATE_SETS]
    for n in numbers:
        key = (n.id,)
        info.append(
            ((n.id, n.display_phone_number or "", n.verified_name or "", n.account_mode or ""), 1)
        )
        for (_, known, value_of), samples in zip(_NUMBER_STATE_SETS, state_sets, strict=True):
            value = value_of(n)
            if value is not None:
                samples += _states(key, known, value)
        limit = n.messaging_limit
        if limit is not None:
            limits.append((key, limit))
        if n.code_verification_status is not None:
            verified.append((key, 1 if n.code_verification_status == "VERIFIED" else 0))
        if n.last_onboarded is not None:
            onboarded.append((key, n.last_onboarded))
    return [
        (NUMBER_INFO, info),
        *zip((family for family, _, _ in _NUMBER_STATE_SETS), state_sets, strict=True),
        (MESSAGING_LIMIT, limits),
        (CODE_VERIFIED, verified),
        (LAST_ONBOARDED, onboarded),
    ]


def render_account(snapshot: AccountSnapshot) -> dict[str, str]:
    """All series of one account, as text per family name."""
    out = Lines()
    base = f'account="{escape(snapshot.name)}"'
    out.one(CLOUD_UP, base, 1 if snapshot.up else 0)
    waba = snapshot.waba
    if waba is not None:
        info = (
            snapshot.waba_id,
            waba.name or "",
            waba.account_review_status or "",
            waba.business_verification_status or "",
        )
        out.add(ACCOUNT_INFO, base, ((info, 1),))
        if waba.can_send_message is not None:
            out.add(CAN_SEND, base, _states((), CAN_SEND_STATES, waba.can_send_message))
        can_send: list[Sample] = []
        errors: list[Sample] = []
        for e in waba.entities:
            if e.can_send_message is not None:
                key = (e.entity_type, e.entity_id)
                can_send += _states(key, CAN_SEND_STATES, e.can_send_message)
            errors += [((e.entity_type, e.entity_id, code), 1) for code in e.error_codes]
        out.add(ENTITY_CAN_SEND, base, can_send)
        out.add(ENTITY_ERROR, base, errors)
    if snapshot.numbers is not None:
        for family, samples in _number_samples(snapshot.numbers):
            out.add(family, base, samples)
    if snapshot.usage is not None:
        out.add(USAGE_RATIO, base, [((kind,), ratio) for kind, ratio in snapshot.usage.ratios])
    if snapshot.last_duration is not None:
        out.one(CLOUD_POLL_DURATION, base, snapshot.last_duration)
    if snapshot.last_success is not None:
        out.one(CLOUD_LAST_SUCCESS, base, snapshot.last_success)
    out.one(CLOUD_POLLS, base, snapshot.polls)
    out.add(CLOUD_POLL_ERRORS, base, [((r,), snapshot.errors.get(r, 0)) for r in ERROR_REASONS])
    if snapshot.invalid_fields:
        invalid = sorted(snapshot.invalid_fields.items())
        out.add(INVALID_FIELDS, base, [((f,), n) for f, n in invalid])
    return {family: "".join(lines) for family, lines in out.lines.items() if lines}
