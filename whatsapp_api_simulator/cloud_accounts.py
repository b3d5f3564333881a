"""The accounts the simulated Graph API shows: every state of the reference, plain ones drawn
from a seed for benchmarks, and scripts of change over time (migration, quality, flagging).
"""

from __future__ import annotations

import random

from whatsapp_api_simulator.cloud_model import (
    ACCOUNT_MODES,
    CODE_VERIFICATION_STATUSES,
    MESSAGING_TIERS,
    NAME_STATUSES,
    PLATFORMS,
    QUALITY_RATINGS,
    STATUSES,
    THROUGHPUT_LEVELS,
    Entity,
    PhoneNumber,
    Script,
    blocked,
    limited,
)

__all__ = [
    "every_state_numbers",
    "flag_and_restore",
    "migration",
    "plain_numbers",
    "quality_swing",
    "unknown_number",
]


def migration(start: float, after: float) -> Script:
    """`ON_PREMISE` until `after` seconds, then registered on `CLOUD_API` (once, for good)."""
    return Script(
        start,
        (
            (0.0, {"platform_type": "ON_PREMISE"}),
            (after, {"platform_type": "CLOUD_API", "last_onboarded_time": start + after}),
        ),
    )


def quality_swing(start: float, period: float) -> Script:
    """GREEN, YELLOW, RED, YELLOW, then GREEN again: a rating that drops and recovers."""
    q = period / 4
    steps = [(i * q, {"quality_rating": r}) for i, r in enumerate(("GREEN", "YELLOW", "RED"))]
    return Script(start, (*steps, (3 * q, {"quality_rating": "YELLOW"})), period)


def flag_and_restore(start: float, period: float) -> Script:
    """CONNECTED, FLAGGED for the middle third of each period, CONNECTED again."""
    third = period / 3
    return Script(
        start,
        (
            (0.0, {"status": "CONNECTED"}),
            (third, {"status": "FLAGGED"}),
            (2 * third, {"status": "CONNECTED"}),
        ),
        period,
    )


def _phone(rng: random.Random) -> str:
    return f"+1 555-{rng.randrange(100, 1000):03d}-{rng.randrange(10_000):04d}"


def every_state_numbers(
    first_id: int, verified_name: str, *, seed: int = 0, start: float = 1_692_731_134.0
) -> list[PhoneNumber]:
    """Eleven numbers that between them show every documented value of every field.

    Number *i* takes value *i* (modulo the list's length) of each list, so each value appears at
    least once. On top: number 1 has only the deprecated `messaging_limit_tier`, number 2 only
    `whatsapp_business_manager_messaging_limit`, number 8 both with different tiers (the newer
    field wins); number 0 is BLOCKED (with an error), number 1 LIMITED (with a reason).
    """
    rng = random.Random(f"{seed}:{first_id}")
    numbers = []
    for i in range(len(STATUSES)):
        tier = MESSAGING_TIERS[i % len(MESSAGING_TIERS)]
        numbers.append(
            PhoneNumber(
                id=str(first_id + i),
                display_phone_number=_phone(rng),
                verified_name=verified_name,
                quality_rating=QUALITY_RATINGS[i % len(QUALITY_RATINGS)],
                status=STATUSES[i],
                platform_type=PLATFORMS[i % len(PLATFORMS)],
                throughput=THROUGHPUT_LEVELS[i % len(THROUGHPUT_LEVELS)],
                messaging_limit_tier=tier,
                business_manager_limit=tier,
                name_status=NAME_STATUSES[i % len(NAME_STATUSES)],
                code_verification_status=CODE_VERIFICATION_STATUSES[
                    i % len(CODE_VERIFICATION_STATUSES)
                ],
                account_mode=ACCOUNT_MODES[i % len(ACCOUNT_MODES)],
                last_onboarded_time=start - i * 86400 * 30,
            )
        )
    numbers[0].health = blocked()
    numbers[1].health = limited()
    numbers[1].business_manager_limit = None
    numbers[2].messaging_limit_tier = None
    numbers[8].business_manager_limit = "TIER_100K"
    return numbers


def unknown_number(number_id: str, verified_name: str) -> PhoneNumber:
    """A number whose every enum carries a value no documentation lists (data, not an error)."""
    return PhoneNumber(
        id=number_id,
        display_phone_number="+1 555-000-0000",
        verified_name=verified_name,
        quality_rating="PURPLE",
        status="ON_VACATION",
        platform_type="MARS_API",
        throughput="LUDICROUS",
        messaging_limit_tier="TIER_42",
        business_manager_limit="TIER_42",
        name_status="PONDERING",
        code_verification_status="MAYBE",
        account_mode="DREAM",
        health=Entity("SOMETIMES"),
    )


def plain_numbers(first_id: int, count: int, verified_name: str, seed: int) -> list[PhoneNumber]:
    """`count` numbers drawn from the seed: mostly healthy, some yellow, some still on-prem."""
    rng = random.Random(f"{seed}:{first_id}")
    numbers = []
    for i in range(count):
        roll = rng.random()
        numbers.append(
            PhoneNumber(
                id=str(first_id + i),
                display_phone_number=_phone(rng),
                verified_name=verified_name,
                quality_rating="GREEN" if roll < 0.8 else ("YELLOW" if roll < 0.95 else "RED"),
                status="CONNECTED" if roll < 0.9 else "FLAGGED",
                platform_type="ON_PREMISE" if rng.random() < 0.1 else "CLOUD_API",
                throughput="HIGH" if rng.random() < 0.2 else "STANDARD",
                messaging_limit_tier=rng.choice(MESSAGING_TIERS[:7]),
                business_manager_limit=rng.choice(MESSAGING_TIERS[:7]),
                last_onboarded_time=1_692_731_134.0 + rng.randrange(0, 86400 * 365),
            )
        )
    return numbers
