"""Token → principal: parse `authorization: Bearer qk_<id>_<secret>`, look the token up, check it.

Look-ups are cached per replica (`NotifiedCache`): a revocation NOTIFYs every replica, which drops the
token at once, so a revoked token stops working everywhere within a second while a busy token costs no
database round trip per call. The secret is checked on every call, in constant time, against the stored
SHA-256. Each token's last use is written in the background, at most every `TOUCH_SECONDS`.

Unknown ids and wrong secrets get the same answer (TOKEN_INVALID); only the holder of the right secret
learns that its token expired or was revoked. No error or log line carries a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from server.domain.cache import NotifiedCache
from server.domain.caller import CallRecord
from server.model.errors import QuarryError, Unauthenticated
from server.model.identity import Principal, TokenRecord, parse_token
from server.storage import tokens as repo
from server.storage.db import Database
from server.storage.notifications import TOKEN_CHANNEL, NotificationHub

log = logging.getLogger(__name__)

CACHE_SECONDS = 60.0
TOUCH_SECONDS = 10.0


class Authenticator:
    """Turns the `authorization` metadata of a call into its principal."""

    def __init__(self, db: Database, hub: NotificationHub, cache_seconds: float = CACHE_SECONDS) -> None:
        self.db = db
        self._tokens: NotifiedCache[tuple[TokenRecord, Principal]] = NotifiedCache(
            hub, TOKEN_CHANNEL, self._load, ttl=cache_seconds)
        self._used: dict[str, datetime] = {}
        self._task: asyncio.Task[None] | None = None

    async def _load(self, token_id: str) -> tuple[TokenRecord, Principal] | None:
        async with self.db.connection() as connection:
            record = await repo.get(connection, token_id)
        return (record, record.principal_of()) if record is not None else None

    async def authenticate(self, authorization: str | None, call: CallRecord | None = None) -> Principal:
        """The principal of a `Bearer` token; Unauthenticated (TOKEN_MISSING, TOKEN_INVALID, TOKEN_EXPIRED,
        TOKEN_REVOKED) otherwise. Once the secret is proven, `call` learns the principal and token, even when
        the token is refused for having expired or been revoked (the audit trail shows who tried)."""
        if not authorization:
            raise Unauthenticated("this call needs a token: send the metadata `authorization: Bearer <token>`",
                                  reason="TOKEN_MISSING")
        scheme, _, text = authorization.strip().partition(" ")
        parsed = parse_token(text.strip()) if scheme.lower() == "bearer" else None
        if parsed is None:
            raise Unauthenticated("the authorization metadata is not `Bearer qk_<id>_<secret>`",
                                  reason="TOKEN_INVALID")
        token_id, secret = parsed
        found = await self._tokens.get(token_id)
        if found is None or not found[0].matches(secret):
            raise Unauthenticated("unknown token", reason="TOKEN_INVALID")
        record, principal = found
        if call is not None:
            call.principal, call.token_id = principal.name, principal.token_id
        now = datetime.now(UTC)
        if record.revoke_time is not None:
            raise Unauthenticated(f"token {record.name} was revoked at {record.revoke_time.isoformat()}",
                                  reason="TOKEN_REVOKED", metadata={"token": record.name})
        if record.expire_time is not None and record.expire_time <= now:
            raise Unauthenticated(f"token {record.name} expired at {record.expire_time.isoformat()}",
                                  reason="TOKEN_EXPIRED", metadata={"token": record.name})
        self._used[token_id] = now
        return principal

    def forget(self, token_id: str) -> None:
        """Drop a token from this replica's cache (a revocation here; other replicas hear the NOTIFY)."""
        self._tokens.drop(token_id)

    def start(self) -> None:
        """Record last uses in the background until `close`."""
        self._task = asyncio.create_task(self._touch_loop(), name="token-last-use")

    async def _touch_loop(self) -> None:
        while True:
            await asyncio.sleep(TOUCH_SECONDS)
            await self.flush()

    async def flush(self) -> None:
        """Write the last uses seen since the previous flush (a failure is logged; the next flush retries)."""
        used, self._used = self._used, {}
        if not used:
            return
        try:
            async with self.db.connection() as connection:
                await repo.touch(connection, used)
        except QuarryError as exc:
            log.warning("could not record token last use", extra={"error": str(exc)})
            for token_id, when in used.items():
                self._used.setdefault(token_id, when)

    async def close(self) -> None:
        """Stop the background task, writing what is pending."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
