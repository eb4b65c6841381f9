"""Calls per second per token, across every replica: a token bucket in Redis, moved by one Lua script.

The script runs atomically in Redis with Redis's own clock, so replicas with skewed clocks share one bucket
fairly. A bucket holds at most one second's worth of calls (at least one), refills continuously, and expires
once it would be full again, so idle tokens cost nothing.
"""

from __future__ import annotations

import logging
import math

import redis.asyncio as redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# KEYS[1]: the bucket. ARGV[1]: calls per second. Returns 0 when the call may proceed, else the microseconds to
# wait until one would be allowed (integers: Redis truncates Lua numbers in replies).
_TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = math.max(1, rate)
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'time')
local tokens = tonumber(state[1]) or burst
local last = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - last) * rate / 1000000)
local wait = 0
if tokens >= 1 then
    tokens = tokens - 1
else
    wait = math.ceil((1 - tokens) * 1000000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'time', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return wait
"""


class RateLimiter:
    """Token buckets in Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._script = client.register_script(_TOKEN_BUCKET)

    @classmethod
    def from_url(cls, url: str) -> RateLimiter:
        """A limiter on the Redis at `url` (connections open on first use)."""
        return cls(redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2))

    async def wait_needed(self, key: str, per_second: float) -> float:
        """Take one call from bucket `key` refilling at `per_second`: 0.0 when allowed, else the seconds until a
        call would be. When Redis does not answer the call is allowed (and the failure logged): a rate limit
        must not take reads down with the queue."""
        try:
            wait = await self._script(keys=[f"quarry:rate:{key}"], args=[repr(float(per_second))])
        except (RedisError, OSError) as exc:
            log.warning("rate limiter unavailable; allowing the call", extra={"error": type(exc).__name__})
            return 0.0
        return math.ceil(int(wait) / 1000) / 1000

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
