"""grpc.health.v1.Health: overall SERVING only while Postgres, Redis and the object store all answer.

Each dependency also has its own service name ("postgres", "redis", "object-store"), and each Quarry
service name mirrors the overall status. A background task re-probes every `health_interval_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

from grpc_health.v1 import health, health_pb2

from server import metrics

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
OVERALL = ""


class HealthReporter:
    """Keeps a HealthServicer's statuses in step with dependency probes."""

    def __init__(self, probe: Callable[[], Awaitable[dict[str, bool]]], service_names: Sequence[str],
                 interval: float) -> None:
        self.servicer = health.aio.HealthServicer()
        self._probe = probe
        self._service_names = list(service_names)
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> bool:
        """Probe once and publish the statuses; True when everything is up."""
        status = await self._probe()
        for name, up in status.items():
            metrics.DEPENDENCY_UP.labels(dependency=name).set(1 if up else 0)
            await self.servicer.set(name, SERVING if up else NOT_SERVING)
        overall = SERVING if all(status.values()) else NOT_SERVING
        for name in [OVERALL, *self._service_names]:
            await self.servicer.set(name, overall)
        return overall == SERVING

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.refresh()

    def start(self) -> None:
        """Probe in the background until `stop`."""
        self._task = asyncio.create_task(self._loop(), name="health-probe")

    async def stop(self) -> None:
        """Stop probing and report NOT_SERVING everywhere (the server is going away)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.servicer.enter_graceful_shutdown()
