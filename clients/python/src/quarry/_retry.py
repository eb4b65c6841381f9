"""When a failed call is tried again, and after how long: a time budget, backoff with full jitter.

Only calls that are safe to repeat are retried: reads, idempotent writes, and creates that carry a
request_id (the server returns the first result to a repeat). Retried codes are UNAVAILABLE and ABORTED,
and RESOURCE_EXHAUSTED only when the server said when to come back (RetryInfo). Delays grow
exponentially up to a cap, with "full jitter" (a uniform draw below the cap, so many clients do not retry
in step), never shorter than RetryInfo asks. What ends the retries is time: `max_total` seconds since the
call started, or since a stream last moved forward, so a server restart or a database outage of up to
that long is ridden out; a count of attempts limits them only when one is given.

`Budget` is the decision of one call and does no I/O; `attempts` and `async_attempts` are the one retry
loop of each kind of client, for unary calls and streams alike:

    for attempt in attempts(budget):
        with attempt:                       # an error the budget retries is swallowed here ...
            response = call()               # ... and the loop sleeps, then tries again
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType

import grpc

from quarry._exceptions import RpcError, TlsError

__all__ = ["Attempt", "Budget", "RetryPolicy", "async_attempts", "attempts"]

_ALWAYS = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter for calls that are safe to repeat, within a time budget."""

    max_attempts: int | None = None  # None: as many as fit in max_total
    initial_backoff: float = 0.2
    max_backoff: float = 5.0
    multiplier: float = 2.0
    max_total: float = 60.0  # seconds a call may keep retrying (a stream: since it last moved forward)
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    @classmethod
    def never(cls) -> RetryPolicy:
        """A policy that tries every call once."""
        return cls(max_attempts=1)

    def is_retryable(self, error: RpcError) -> bool:
        """Whether the error's code says trying again may succeed (for a call that is safe to repeat)."""
        if isinstance(error, TlsError):
            return False  # a handshake that failed fails the same way next time
        if error.code in _ALWAYS:
            return True
        return error.code is grpc.StatusCode.RESOURCE_EXHAUSTED and error.retry_delay is not None

    def backoff(self, attempt: int) -> float:
        """The cap of the delay before retry number `attempt` (1-based)."""
        exponent = min(max(0, attempt - 1), 64)  # past the cap anyway; keeps the power finite
        return min(self.max_backoff, self.initial_backoff * self.multiplier ** exponent)

    def delay(self, attempt: int, error: RpcError) -> float:
        """Seconds to wait before retry number `attempt`: jittered backoff, never less than RetryInfo asks."""
        jittered = self.rng.uniform(0, self.backoff(attempt))
        return max(jittered, error.retry_delay or 0.0)

    def next_delay(self, attempt: int, error: RpcError, waited: float) -> float | None:
        """The delay before retrying after failed attempt `attempt`, `waited` seconds into the call (tries
        and waits), or None to give up."""
        if not self.is_retryable(error):
            return None
        return self.fit(attempt, waited, self.delay(attempt, error), error.retry_delay or 0.0)

    def fit(self, attempt: int, waited: float, delay: float, floor: float = 0.0) -> float | None:
        """`delay`, shortened to end with the budget, if one more try fits the attempts and the time left;
        None when it does not (or when the server's `floor` reaches past the budget)."""
        left = self.max_total - waited
        if (self.max_attempts is not None and attempt >= self.max_attempts) or left <= 0 or floor > left:
            return None
        return min(delay, left)


class Budget:
    """The retry decisions of one call: failures in a row, and the time since the call started or last
    moved forward. No I/O: the loops below sleep for it."""

    def __init__(self, policy: RetryPolicy, *, retryable: Callable[[RpcError], bool] | None = None,
                 delay: Callable[[int, RpcError], float] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.retryable = retryable or policy.is_retryable
        self._delay = delay or policy.delay
        self._clock = clock
        self.failures = 0
        self.since = clock()
        self._spent = False

    @classmethod
    def once(cls) -> Budget:
        """The budget of a call that must not be repeated."""
        return cls(RetryPolicy.never(), retryable=lambda _: False)

    def progressed(self) -> None:
        """The call moved forward (a stream delivered or committed bytes): the next failure starts afresh."""
        self.failures = 0
        self.since = self._clock()

    def spend(self) -> None:
        """Nothing is retried any more: the next failure is the call's end."""
        self._spent = True

    def delay_after(self, error: RpcError) -> float | None:
        """Seconds to wait before trying again after `error`, or None to give up (and raise it)."""
        self.failures += 1
        if self._spent or not self.retryable(error):
            return None
        return self.policy.fit(self.failures, self._clock() - self.since, self._delay(self.failures, error),
                               error.retry_delay or 0.0)


class Attempt:
    """One try of a call. As a context manager it swallows an RpcError its budget retries, keeping the
    delay before the next try; every other exception, and an error given up on, goes on."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.delay: float | None = None

    def __enter__(self) -> Attempt:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> bool:
        if not isinstance(error, RpcError):
            return False
        self.delay = self.budget.delay_after(error)
        return self.delay is not None


def attempts(budget: Budget) -> Iterator[Attempt]:
    """The tries of one call (blocking): after a try that failed and may be repeated, sleep, then the next;
    the loop ends after a try that did not fail."""
    while True:
        attempt = Attempt(budget)
        yield attempt
        if attempt.delay is None:
            return
        time.sleep(attempt.delay)


async def async_attempts(budget: Budget) -> AsyncIterator[Attempt]:
    """The tries of one call (asyncio): the same loop as `attempts`, sleeping without blocking."""
    while True:
        attempt = Attempt(budget)
        yield attempt
        if attempt.delay is None:
            return
        await asyncio.sleep(attempt.delay)
