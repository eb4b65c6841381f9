"""The fault suite (`make test-faults`): what an outside tester did to Quarry, as tests.

Postgres, Redis, servers and workers run as separate processes of each test's own cluster and are killed
(SIGKILL) and started again mid-flight; the local store fills up; clients stall. Every case ends with each
upload READY with the sha256 the client sent, or FAILED with a reason and resumable, and nothing left behind.
The worker and CLI kill tests (test_worker_recovery, test_worker_outages, test_cli_resume) use the session's
Postgres, Redis and moto instead, each with a database, Redis database and bucket prefix of its own.
Not part of `make test` (tests/ skips this directory): it takes minutes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.cluster import Cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Postgres, Redis and a store directory of this test's own; servers and workers are started by the test."""
    started = Cluster.start(tmp_path / "cluster")
    yield started
    started.stop()
