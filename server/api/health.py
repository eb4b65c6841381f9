"""grpc.health.v1.Health: overall SERVING only while Postgres, Redis and the object store all answer.

Each dependency also has its own service name ("postgres", "redis", "object-store"), and each Quarry
service name mirrors the overall status. A background task re-probes every `health_interval_seconds`; a
dependency is NOT_SERVING only after `health_failures` failed probes in a row (server/domain/health.py), and
the log says which one and why.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from grpc_health.v1 import health, health_pb2

from server.domain.health import DEPENDENCIES, DependencyHealth, Probe

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
OVERALL = ""


class HealthReporter:
    """Keeps a HealthServicer's statuses in step with dependency probes."""

    def __init__(self, probe: Probe, service_names: Sequence[str], interval: float, failures: int = 3) -> None:
        self.servicer = health.aio.HealthServicer()
        self.state = DependencyHealth(DEPENDENCIES, failures)
        self._probe = probe
        self._service_names = list(service_names)
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> bool:
        """Probe once and publish the statuses; True when everything is up."""
        await self.state.refresh(self._probe)
        for name, up in self.state.status.items():
            await self.servicer.set(name, SERVING if up else NOT_SERVING)
        overall = SERVING if self.state.all_up else NOT_SERVING
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
