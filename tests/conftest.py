"""Session fixtures: real Postgres, Redis and moto's S3 server, and Quarry servers on real sockets.

Everything starts once per session. Each store kind ("file", "s3") gets its own database, Redis
database and server, so their workers never see each other's rows. Each test acts in its own
namespace, which isolates it from the others.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import asyncpg
import boto3
import pytest

from server.connections import open_configured_store
from server.embedded import EmbeddedPostgres, EmbeddedRedis
from server.listen_ports import free_port
from server.model.objects import ObjectStore
from server.settings import Settings
from tests.support import Api, QuarryProcess, ServerHandle, clean_env, open_api, start_server

BUCKET = "quarry-test"
STORE_KINDS = ["file", "s3"]
REDIS_DB = {"file": 1, "s3": 2}
IDLE_REDIS_DB = {"file": 11, "s3": 12}
# Tests with stacks of their own take a Redis database each: a worker takes whatever jobs wait in its database, so
# jobs another test left there would be counted as its own. 3 clone, 4 inline, 5-8 worker recovery, 9 sweep,
# 10 worker observability, 11 short writes, 13 renditions, 14-15 registration.


@pytest.fixture(scope="session")
def tmp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("quarry")


@pytest.fixture(scope="session", autouse=True)
def no_users_credentials(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests never read (nor `quarry dev` write) the credentials of whoever runs them: the default credentials file
    is under a directory of the session's own, in this process and in every process it starts."""
    saved = {key: os.environ.get(key) for key in ("XDG_CONFIG_HOME", "QUARRY_TOKEN", "QUARRY_CREDENTIALS")}
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("config"))
    os.environ.pop("QUARRY_TOKEN", None)
    os.environ.pop("QUARRY_CREDENTIALS", None)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def postgres(tmp_root: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_root / "pg")
    server.start()
    yield server
    server.stop()


def database_url(postgres: EmbeddedPostgres, name: str) -> str:
    """DSN of database `name` on the test cluster."""
    assert postgres.socket_dir is not None
    return f"postgresql://postgres@/{name}?host={quote(str(postgres.socket_dir))}"


async def create_database(postgres: EmbeddedPostgres, name: str) -> str:
    """Create an empty database and return its DSN."""
    connection = await asyncpg.connect(postgres.url)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return database_url(postgres, name)


@pytest.fixture(scope="session")
def redis_server(tmp_root: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_root / "redis", persistent=False)
    server.start()
    yield server
    server.stop()


def redis_url(redis: EmbeddedRedis, db: int) -> str:
    return f"{redis.url}?db={db}" if redis.url.startswith("unix://") else redis.url.rsplit("/", 1)[0] + f"/{db}"


async def own_stack(stack_envs: dict[str, dict[str, str]], kind: str, postgres: EmbeddedPostgres,
                    redis_server: EmbeddedRedis, name: str, db_number: int) -> dict[str, str]:
    """The session stack's env of `kind`, with a database, a Redis database and a bucket prefix of its own: for
    a test that kills its workers or servers without touching the session's."""
    env = dict(stack_envs[kind])
    # A prefix of its own on the shared bucket: moto reports every multipart upload as initiated in 2010, so the
    # session stack's sweeper would abort this stack's uploads in flight as orphans of its own database.
    env["QUARRY_STORAGE_URL"] = env["QUARRY_STORAGE_URL"].replace(f"s3://{BUCKET}/quarry?", f"s3://{BUCKET}/{name}?")
    env["QUARRY_DATABASE_URL"] = await create_database(postgres, name)
    env["QUARRY_REDIS_URL"] = redis_url(redis_server, db_number)
    env["QUARRY_JOB_HEARTBEAT_SECONDS"] = "2"
    return env


@pytest.fixture(scope="session")
def moto_endpoint(tmp_root: Path) -> Iterator[str]:
    port = free_port()
    log = open(tmp_root / "moto.log", "wb")  # noqa: SIM115
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.1)
    endpoint = f"http://127.0.0.1:{port}"
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                      region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    yield endpoint
    process.terminate()
    process.wait(10)
    log.close()


def storage_env(kind: str, tmp_root: Path, moto: str | None) -> dict[str, str]:
    if kind == "file":
        return {"QUARRY_STORAGE_URL": f"file://{tmp_root / 'objects'}"}
    assert moto is not None
    return {"QUARRY_STORAGE_URL": f"s3://{BUCKET}/quarry?endpoint={moto}",
            "QUARRY_S3_ACCESS_KEY_ID": "test", "QUARRY_S3_SECRET_ACCESS_KEY": "test"}


def settings_of(env: dict[str, str]) -> Settings:
    """The Settings a process started with `env` would read."""
    return Settings(**{k.removeprefix("QUARRY_").lower(): v for k, v in env.items()  # type: ignore[arg-type]
                       if k.startswith("QUARRY_")})


@pytest.fixture(scope="session")
async def stack_envs(postgres: EmbeddedPostgres, redis_server: EmbeddedRedis, tmp_root: Path,
                     moto_endpoint: str) -> dict[str, dict[str, str]]:
    """Per store kind: the QUARRY_* environment of its server and workers."""
    envs = {}
    for kind in STORE_KINDS:
        moto = moto_endpoint if kind == "s3" else None
        envs[kind] = clean_env(
            QUARRY_DATABASE_URL=await create_database(postgres, f"quarry_{kind}"),
            QUARRY_REDIS_URL=redis_url(redis_server, REDIS_DB[kind]),
            QUARRY_LOG_LEVEL="INFO",
            QUARRY_WORKER_METRICS_PORT="0",
            QUARRY_SHUTDOWN_GRACE_SECONDS="5",
            QUARRY_HEALTH_INTERVAL_SECONDS="0.5",
            **storage_env(kind, tmp_root, moto),
        )
    return envs


@pytest.fixture(scope="session")
async def idle_envs(stack_envs: dict[str, dict[str, str]], postgres: EmbeddedPostgres,
                    redis_server: EmbeddedRedis) -> dict[str, dict[str, str]]:
    """Per store kind: a database and job queue of their own that no worker ever serves, on the same store. Rows
    stay in whatever state a test puts them in (STAGED, VALIDATING, PENDING, PROMOTING …) until it runs a job."""
    return {kind: dict(env, QUARRY_DATABASE_URL=await create_database(postgres, f"quarry_idle_{kind}"),
                       QUARRY_REDIS_URL=redis_url(redis_server, IDLE_REDIS_DB[kind]))
            for kind, env in stack_envs.items()}


@pytest.fixture(scope="session")
def idle_server(idle_envs: dict[str, dict[str, str]], tmp_root: Path) -> Iterator[ServerHandle]:
    """A server (local store) on the idle stack: what it accepts is never validated nor promoted."""
    yield from _server("file", idle_envs, tmp_root, "server-idle")


@pytest.fixture(scope="session")
async def idle_pool(idle_envs: dict[str, dict[str, str]], idle_server: ServerHandle) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(idle_envs["file"]["QUARRY_DATABASE_URL"], min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
async def idle_env(idle_server: ServerHandle, idle_pool: asyncpg.Pool,
                   stores: dict[str, ObjectStore]) -> AsyncIterator[Env]:
    """`env` on the idle stack."""
    api = open_api(idle_server.address)
    yield Env(api, idle_server, stores["file"], idle_pool)
    await api.channel.close()


def _server(kind: str, envs: dict[str, dict[str, str]], tmp_root: Path, name: str = "") -> Iterator[ServerHandle]:
    handle = start_server(envs[kind], tmp_root, name or f"server-{kind}", kind)
    yield handle
    handle.process.stop()


@pytest.fixture(scope="session")
def server_file(stack_envs: dict[str, dict[str, str]], tmp_root: Path) -> Iterator[ServerHandle]:
    yield from _server("file", stack_envs, tmp_root)


@pytest.fixture(scope="session")
def server_s3(stack_envs: dict[str, dict[str, str]], tmp_root: Path) -> Iterator[ServerHandle]:
    yield from _server("s3", stack_envs, tmp_root)


SMALL_PART_BYTES = 5 << 20


def _small_parts(kind: str, envs: dict[str, dict[str, str]], tmp_root: Path) -> Iterator[ServerHandle]:
    handle = start_server(dict(envs[kind], QUARRY_MAX_PART_BYTES=str(SMALL_PART_BYTES)), tmp_root,
                          f"server-small-parts-{kind}", kind)
    yield handle
    handle.process.stop()


@pytest.fixture(scope="session")
def small_parts_file(stack_envs: dict[str, dict[str, str]], tmp_root: Path) -> Iterator[ServerHandle]:
    """A server whose parts are 5 MiB (S3's smallest), on the same database and store as `server_file`: a
    test of part boundaries sends a third of the bytes."""
    yield from _small_parts("file", stack_envs, tmp_root)


@pytest.fixture(scope="session")
def small_parts_s3(stack_envs: dict[str, dict[str, str]], tmp_root: Path) -> Iterator[ServerHandle]:
    """`small_parts_file` on S3."""
    yield from _small_parts("s3", stack_envs, tmp_root)


def _worker(kind: str, envs: dict[str, dict[str, str]], tmp_root: Path) -> Iterator[QuarryProcess]:
    env = dict(envs[kind], QUARRY_JOB_HEARTBEAT_SECONDS="2")
    process = QuarryProcess("workers", env, tmp_root / f"worker-{kind}.log").start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def worker_file(stack_envs: dict[str, dict[str, str]], tmp_root: Path) -> Iterator[QuarryProcess]:
    yield from _worker("file", stack_envs, tmp_root)


@pytest.fixture(scope="session")
def worker_s3(stack_envs: dict[str, dict[str, str]], tmp_root: Path) -> Iterator[QuarryProcess]:
    yield from _worker("s3", stack_envs, tmp_root)


@pytest.fixture(params=STORE_KINDS)
def quarry(request: pytest.FixtureRequest) -> ServerHandle:
    """A running server, once per store kind."""
    return request.getfixturevalue(f"server_{request.param}")  # type: ignore[no-any-return]


@pytest.fixture
async def api(quarry: ServerHandle) -> AsyncIterator[Api]:
    """Stubs on the server, in a namespace of this test's own."""
    client = open_api(quarry.address)
    yield client
    await client.channel.close()


@pytest.fixture(scope="session")
async def stores(stack_envs: dict[str, dict[str, str]]) -> AsyncIterator[dict[str, ObjectStore]]:
    """In-process stores pointing at what each server uses, to look at bytes directly."""
    opened = {kind: await open_configured_store(settings_of(env)) for kind, env in stack_envs.items()}
    yield opened
    for store in opened.values():
        await store.close()


@pytest.fixture(scope="session")
async def pools(stack_envs: dict[str, dict[str, str]]) -> AsyncIterator[dict[str, asyncpg.Pool]]:
    """Connection pools on each kind's database, to look at rows directly."""
    opened = {kind: await asyncpg.create_pool(env["QUARRY_DATABASE_URL"], min_size=1, max_size=4)
              for kind, env in stack_envs.items()}
    yield opened
    for pool in opened.values():
        await pool.close()


@dataclass
class Env:
    """What an upload test needs: the API in its own namespace, and direct views of rows and bytes."""

    api: Api
    server: ServerHandle
    store: ObjectStore
    pool: asyncpg.Pool

    @property
    def namespace(self) -> str:
        return self.api.namespace

    async def read_object(self, key: str) -> bytes:
        return b"".join([chunk async for chunk in self.store.read(key)])

    async def staged_sha256(self, upload_uid: str) -> str:
        digest = hashlib.sha256()
        async for chunk in self.store.read(f"staging/{self.namespace}/{upload_uid}"):
            digest.update(chunk)
        return digest.hexdigest()

    async def leftovers(self) -> dict[str, int]:
        """Rows, staged objects, open multipart writes and versions this test's namespace still has."""
        counts = await self.pool.fetchrow(
            """SELECT (SELECT count(*) FROM uploads u WHERE u.namespace_id = n.id) AS rows,
                      (SELECT count(*) FROM versions v JOIN datasets d ON d.id = v.dataset_id
                        WHERE d.namespace_id = n.id) AS versions
               FROM (SELECT $1::text AS name) AS wanted LEFT JOIN namespaces n ON n.name = wanted.name""",
            self.namespace)
        objects = [o async for o in self.store.list_objects(f"staging/{self.namespace}/")]
        multipart = [m async for m in self.store.list_multipart(f"staging/{self.namespace}/")]
        return {"rows": int(counts["rows"] or 0), "objects": len(objects), "multipart": len(multipart),
                "versions": int(counts["versions"] or 0)}


@pytest.fixture
async def env(api: Api, quarry: ServerHandle, stores: dict[str, ObjectStore],
              pools: dict[str, asyncpg.Pool]) -> Env:
    return Env(api, quarry, stores[quarry.storage_kind], pools[quarry.storage_kind])


@pytest.fixture
async def pipeline_env(env: Env, request: pytest.FixtureRequest) -> Env:
    """`env` with a worker running for its store kind."""
    request.getfixturevalue(f"worker_{env.server.storage_kind}")
    return env


# The version the data-out tests read back (SDK tables, fsspec, Flight, downloads), shared by their modules.
from tests.reading import published  # noqa: E402, F401
