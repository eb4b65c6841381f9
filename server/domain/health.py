"""Whether each dependency is up, from its probes: down only after `failures` failed probes in a row.

One slow answer under load must not take a busy, healthy replica out of a load balancer, so a dependency
is reported down only after several consecutive failures; the first success brings it back. Every change is
logged with the dependency and the reason of its last failure, and `quarry_dependency_up` follows it. The
server's gRPC health service and the worker's /health both read this.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

from server import metrics

log = logging.getLogger(__name__)

# A probe round: for each dependency, None when it answered, else why not.
Probe = Callable[[], Awaitable[Mapping[str, str | None]]]
DEPENDENCIES = ("postgres", "redis", "object-store")


class DependencyHealth:
    """The up/down state of each dependency, with the reason of the last failure."""

    def __init__(self, names: Sequence[str], failures: int) -> None:
        self.failures = failures
        self._failed: dict[str, int] = {name: 0 for name in names}
        self._reasons: dict[str, str] = {}
        self._up: dict[str, bool] = {name: True for name in names}
        for name in names:
            metrics.DEPENDENCY_UP.labels(dependency=name).set(1)

    def record(self, results: Mapping[str, str | None]) -> None:
        """Take in one round of probes."""
        for name, reason in results.items():
            self._failed.setdefault(name, 0)
            was_up = self._up.get(name, True)
            if reason is None:
                self._failed[name] = 0
                self._reasons.pop(name, None)
                self._up[name] = True
                if not was_up:
                    log.warning("dependency %s is back", name, extra={"dependency": name})
            else:
                self._failed[name] += 1
                self._reasons[name] = reason
                if self._failed[name] >= self.failures:
                    self._up[name] = False
                    if was_up:
                        log.error("dependency %s is down: %s", name, reason,
                                  extra={"dependency": name, "reason": reason, "failed_probes": self._failed[name]})
                else:
                    log.warning("dependency %s did not answer (%d of %d before it counts as down): %s", name,
                                self._failed[name], self.failures, reason, extra={"dependency": name})
            metrics.DEPENDENCY_UP.labels(dependency=name).set(1 if self._up[name] else 0)

    def up(self, name: str) -> bool:
        """Whether `name` counts as up."""
        return self._up.get(name, True)

    @property
    def all_up(self) -> bool:
        return all(self._up.values())

    @property
    def status(self) -> dict[str, bool]:
        """Each dependency: up or not."""
        return dict(self._up)

    def describe(self) -> str:
        """One line per dependency that is down, with why."""
        return "\n".join(f"{name}: {self._reasons.get(name, 'down')}" for name, up in self._up.items() if not up)

    async def refresh(self, probe: Probe) -> None:
        """Run one round of `probe` and record it."""
        self.record(await probe())
