"""Gauges read from Postgres on a timer (uploads by state), so every replica reports the same totals."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from server import metrics
from server.model.errors import QuarryError
from server.model.uploads import UploadState
from server.storage import uploads
from server.storage.db import Database

log = logging.getLogger(__name__)


class UploadStateSampler:
    """Sets `quarry_uploads{state=…}` every `interval` seconds."""

    def __init__(self, db: Database, interval: float) -> None:
        self._db = db
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def sample(self) -> None:
        """Read the counts once."""
        async with self._db.connection() as connection:
            counts = await uploads.count_by_state(connection)
        for state in UploadState:
            metrics.UPLOADS_BY_STATE.labels(state=state.value).set(counts.get(state.value, 0))

    async def _loop(self) -> None:
        while True:
            try:
                await self.sample()
            except QuarryError as exc:
                log.warning("cannot sample upload states: %s", exc)
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        """Sample in the background until `stop`."""
        self._task = asyncio.create_task(self._loop(), name="upload-state-sampler")

    async def stop(self) -> None:
        """Stop sampling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
