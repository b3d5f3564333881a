"""Why a poll failed: one closed list of reasons, and the exception that carries one.

Every failure of an attempt on an upstream leaves the client as a :class:`PollError` with exactly
one :class:`Reason` and a detail that is safe to log (never a credential, never a body). An
exception of the exporter's own during a poll is the reason ``internal``, so that an operator never
blames the upstream for our bug.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """The ``reason`` label of ``whatsapp_exporter_poll_errors_total``, in exposition order."""

    TIMEOUT = "timeout"
    CONNECT = "connect"
    TLS = "tls"
    AUTH = "auth"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    HTTP = "http"
    INVALID_RESPONSE = "invalid_response"
    # Our own fault (a bug, memory exhausted) while polling: never the upstream's.
    INTERNAL = "internal"


# Reasons that say "slow down or wait": the next poll of the target waits longer each time.
BACKOFF_REASONS = frozenset(
    {Reason.RATE_LIMITED, Reason.UNAVAILABLE, Reason.TIMEOUT, Reason.CONNECT, Reason.AUTH}
)


class PollError(Exception):
    """A failed attempt: one reason, a loggable detail, how long the upstream asked us to wait."""

    def __init__(self, reason: Reason, detail: str, retry_after: float | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after
