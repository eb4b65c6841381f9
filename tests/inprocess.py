"""The domain services in the test's own process, on the same Postgres, Redis and store as a server."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from server.composition import open_services
from server.connections import open_connections
from server.domain.services import Services
from tests.conftest import settings_of


@contextlib.asynccontextmanager
async def in_process(env: dict[str, str], **overrides: str) -> AsyncIterator[Services]:
    """Services built from a server's environment (plus overrides), closed afterwards."""
    settings = settings_of(dict(env, **overrides))
    async with open_connections(settings) as deps, open_services(deps) as services:
        yield services
