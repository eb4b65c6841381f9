"""When a failed call is tried again, and after how long.

Only calls that are safe to repeat are retried: reads, idempotent writes, and creates that carry a
request_id (the server returns the first result to a repeat). Retried codes are UNAVAILABLE and ABORTED,
and RESOURCE_EXHAUSTED only when the server said when to come back (RetryInfo). Delays grow
exponentially with "full jitter" (a uniform draw below the cap), so many clients do not retry in step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import grpc

from quarry._exceptions import RpcError

__all__ = ["RetryPolicy"]

_ALWAYS = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for calls that are safe to repeat."""

    max_attempts: int = 5
    initial_backoff: float = 0.2
    max_backoff: float = 10.0
    multiplier: float = 2.0
    max_total: float = 60.0  # give up rather than wait past this many seconds in all
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    @classmethod
    def never(cls) -> RetryPolicy:
        """A policy that tries every call once."""
        return cls(max_attempts=1)

    def is_retryable(self, error: RpcError) -> bool:
        """Whether the error's code says trying again may succeed (for a call that is safe to repeat)."""
        if error.code in _ALWAYS:
            return True
        return error.code is grpc.StatusCode.RESOURCE_EXHAUSTED and error.retry_delay is not None

    def backoff(self, attempt: int) -> float:
        """The cap of the delay before retry number `attempt` (1-based)."""
        return min(self.max_backoff, self.initial_backoff * self.multiplier ** max(0, attempt - 1))

    def delay(self, attempt: int, error: RpcError) -> float:
        """Seconds to wait before retry number `attempt`: jittered backoff, never less than RetryInfo asks."""
        jittered = self.rng.uniform(0, self.backoff(attempt))
        return max(jittered, error.retry_delay or 0.0)

    def next_delay(self, attempt: int, error: RpcError, waited: float) -> float | None:
        """The delay before retrying after failed attempt `attempt`, or None to give up."""
        if attempt >= self.max_attempts or not self.is_retryable(error):
            return None
        delay = self.delay(attempt, error)
        if waited + delay > self.max_total:
            return None
        return delay
