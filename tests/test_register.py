"""RegisterFiles: objects of a second bucket on moto's S3 server and files under a local register root become a
version without being uploaded; reads are pinned (a changed object is EXTERNAL_CHANGED, a removed one
EXTERNAL_MISSING, never other bytes); `copy` copies them in; refusals leave nothing; the collector never
touches an external object.

The use cases run in this process on a database of their own (the worker's job is called directly).
"""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import boto3
import pyarrow.csv as pa_csv
import pytest
from botocore.exceptions import ClientError

from server.domain import registration
from server.domain.caller import Caller
from server.domain.datasets import NewDataset
from server.domain.registration import RegisterRequest
from server.domain.services import Services
from server.embedded import EmbeddedRedis
from server.model.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    NotSupported,
    PermissionDenied,
    QuarryError,
)
from server.model.namespaces import Quota
from server.model.registration import Registration
from server.model.versions import Version, VersionState
from server.storage.objects.external import translate
from tests.conftest import create_database, redis_url
from tests.inprocess import in_process
from tests.samples import csv_sample, parquet_sample
from tests.support import eventually

CALLER = Caller("registering")
DATASET = f"namespaces/{CALLER.namespace}/datasets/reg"


def s3_client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                        region_name="us-east-1")


@pytest.fixture
async def s3_services(stack_envs: dict[str, dict[str, str]], moto_endpoint: str, postgres: object,
                      redis_server: EmbeddedRedis) -> AsyncIterator[tuple[Services, Any, str]]:
    bucket = f"source-{uuid.uuid4().hex[:10]}"
    client = s3_client(moto_endpoint)
    client.create_bucket(Bucket=bucket)
    env = dict(stack_envs["s3"], QUARRY_DATABASE_URL=await create_database(postgres, "register"),  # type: ignore[arg-type]
               QUARRY_REDIS_URL=redis_url(redis_server, 14))
    async with in_process(env, QUARRY_GC_GRACE_SECONDS="0.2",
                          QUARRY_DELETED_RETENTION_DAYS=repr(0.5 / 86400)) as services:
        await services.namespaces.create(CALLER, CALLER.namespace, Quota(), None)
        await services.datasets.create(CALLER, "", NewDataset("reg"))
        yield services, client, bucket


@pytest.fixture
async def local_services(stack_envs: dict[str, dict[str, str]], postgres: object, redis_server: EmbeddedRedis,
                         tmp_path: Path) -> AsyncIterator[tuple[Services, Path]]:
    root = tmp_path / "shared"
    (root / "in").mkdir(parents=True)
    env = dict(stack_envs["file"], QUARRY_DATABASE_URL=await create_database(postgres, "registerlocal"),  # type: ignore[arg-type]
               QUARRY_REDIS_URL=redis_url(redis_server, 15), QUARRY_STORAGE_URL=f"file://{tmp_path / 'objects'}")
    async with in_process(env, QUARRY_REGISTER_ROOTS=str(root)) as services:
        await services.namespaces.create(CALLER, CALLER.namespace, Quota(), None)
        await services.datasets.create(CALLER, "", NewDataset("reg"))
        yield services, root / "in"


async def register(services: Services, uri: str, **options: Any) -> Version:
    """RegisterFiles, then the worker's job, run here; the version as it ended."""
    version = await services.registrations.register(CALLER, RegisterRequest(DATASET, Registration(uri, **options)))
    assert version.state == VersionState.PENDING and version.registration is not None
    await services.pipeline.promote_version(version.id)
    return await services.versions.get(CALLER, f"{DATASET}/versions/{version.id}", with_files=True)


async def read(services: Services, version: Version, path: str) -> bytes:
    found = await services.files.read(CALLER, version.name, path, 0, 0)
    return b"".join([chunk async for _, chunk in found.chunks()])


async def stored_keys(services: Services) -> set[str]:
    """The store's keys but the health probes' (other servers on this bucket write and delete them at any time)."""
    return {o.key async for o in services.uploads.store.list_objects("") if not o.key.startswith("health/")}


async def counts(services: Services) -> tuple[int, int]:
    async with services.db.connection() as connection:
        row = await connection.fetchrow("SELECT (SELECT count(*) FROM versions) AS v, "
                                        "(SELECT count(*) FROM fresh_objects) AS o")
    return row["v"], row["o"]


async def test_an_s3_prefix_registered_read_pinned_and_never_deleted(
        s3_services: tuple[Services, Any, str]) -> None:
    services, s3, bucket = s3_services
    table, blob = csv_sample(400), parquet_sample(300)
    s3.put_object(Bucket=bucket, Key="data/table.csv", Body=table.data)
    s3.put_object(Bucket=bucket, Key="data/part/t.parquet", Body=blob.data)
    s3.put_object(Bucket=bucket, Key="data/skip.tmp", Body=b"x")
    s3.put_object(Bucket=bucket, Key="other/elsewhere.csv", Body=b"a\n1\n")
    before = await stored_keys(services)
    version = await register(services, f"s3://{bucket}/data/", exclude=("*.tmp",), path_prefix="raw")
    assert version.state == VersionState.READY, version.failure
    files = {f.path: f for f in version.files}
    assert set(files) == {"raw/table.csv", "raw/part/t.parquet"}
    assert all(f.external for f in files.values()) and files["raw/table.csv"].row_count == 400
    assert files["raw/table.csv"].sha256 == table.sha256
    assert await stored_keys(services) == before  # no byte copied in
    assert await read(services, version, "raw/table.csv") == table.data
    preview = await services.files.preview(CALLER, version.name, "raw/part/t.parquet", 5)
    assert preview.row_count == 5 and preview.total_rows == 300
    with pytest.raises(NotSupported) as no_url:
        await services.files.download_url(CALLER, version.name, "raw/table.csv", 60)
    assert no_url.value.reason == "NOT_IN_OBJECT_STORE"
    # Changed after registration: refused, not served.
    s3.put_object(Bucket=bucket, Key="data/table.csv", Body=table.data + b"999,x,1.0\n")
    with pytest.raises(FailedPrecondition) as changed:
        await read(services, version, "raw/table.csv")
    assert changed.value.reason == "EXTERNAL_CHANGED"
    s3.delete_object(Bucket=bucket, Key="data/part/t.parquet")
    with pytest.raises(NotFound) as gone:
        await read(services, version, "raw/part/t.parquet")
    assert gone.value.reason == "EXTERNAL_MISSING"
    # The dataset deleted and purged: its rows go, the bucket's objects stay.
    await services.datasets.delete(CALLER, DATASET, "")

    async def forgotten() -> bool:
        await services.sweeper.sweep()
        async with services.db.connection() as connection:
            return await connection.fetchval("SELECT count(*) FROM fresh_objects WHERE external_uri IS NOT NULL") == 0

    await eventually(forgotten, "the external rows collected", timeout=20)
    assert s3.get_object(Bucket=bucket, Key="data/table.csv")["Body"].read().startswith(table.data)


async def test_copy_takes_the_bytes_in(s3_services: tuple[Services, Any, str]) -> None:
    services, s3, bucket = s3_services
    table = csv_sample(50)
    s3.put_object(Bucket=bucket, Key="in/t.csv", Body=table.data)
    version = await register(services, f"s3://{bucket}/in", copy=True)
    file = version.files[0]
    assert version.state == VersionState.READY and file.path == "t.csv" and not file.external
    assert file.object_key.startswith("fresh/") and await services.uploads.store.exists(file.object_key)
    s3.delete_object(Bucket=bucket, Key="in/t.csv")
    assert await read(services, version, "t.csv") == table.data  # ours now


async def test_registration_refusals_leave_nothing(s3_services: tuple[Services, Any, str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    services, s3, bucket = s3_services
    s3.put_object(Bucket=bucket, Key="bad/ragged.csv", Body=b"a,b\n1,2\n3\n")
    before = await counts(services)
    cases: list[tuple[str, dict[str, Any], type[QuarryError], str]] = [
        (f"s3://{bucket}/nothing-here/", {}, NotFound, "SOURCE_NOT_FOUND"),
        (f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/x/", {}, NotFound, "SOURCE_NOT_FOUND"),
        (f"s3://{bucket}/bad/", {"include": ("*.parquet",)}, NotFound, "SOURCE_NOT_FOUND"),
        ("ftp://host/x", {}, InvalidArgument, "INVALID_SOURCE_URI"),
        ("file:///etc", {}, FailedPrecondition, "SOURCE_UNSUPPORTED"),
        (f"s3://{bucket}/bad/", {"include": ("",)}, InvalidArgument, "INVALID_FILTER"),
    ]
    for uri, options, error, reason in cases:
        with pytest.raises(error) as refused:
            await services.registrations.register(CALLER, RegisterRequest(DATASET, Registration(uri, **options)))
        assert refused.value.reason == reason, uri
    assert await counts(services) == before
    # A file validation refuses: the version fails with its reason and registers nothing.
    failed = await register(services, f"s3://{bucket}/bad/")
    assert failed.state == VersionState.FAILED and failed.failure is not None
    assert failed.failure.reason == "RAGGED_ROW"
    assert (await counts(services))[1] == before[1]
    # More objects than one version registers: the version fails, nothing registered.
    for index in range(2):
        s3.put_object(Bucket=bucket, Key=f"many/{index}.txt", Body=b"x\n")
    monkeypatch.setattr(registration, "MAX_REGISTERED", 1)
    many = await register(services, f"s3://{bucket}/many/")
    assert many.state == VersionState.FAILED and many.failure is not None
    assert many.failure.reason == "TOO_MANY_FILES_TO_REGISTER" and (await counts(services))[1] == before[1]
    # S3 refusing the server's credentials (moto grants everything: the translation, from S3's own answer).
    denied = translate(ClientError({"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}},
                                   "ListObjectsV2"), "s3://private/x")
    assert isinstance(denied, PermissionDenied) and denied.reason == "SOURCE_ACCESS_DENIED"


async def test_a_local_root_registered_and_pinned(local_services: tuple[Services, Path]) -> None:
    services, directory = local_services
    table = csv_sample(120)
    (directory / "t.csv").write_bytes(table.data)
    (directory / "notes.txt").write_text("hello\n")
    version = await register(services, directory.as_uri())
    assert version.state == VersionState.READY, version.failure
    assert sorted(f.path for f in version.files) == ["notes.txt", "t.csv"]
    got = await read(services, version, "t.csv")
    assert pa_csv.read_csv(io.BytesIO(got)).num_rows == 120
    (directory / "notes.txt").write_text("hello, changed\n")
    with pytest.raises(FailedPrecondition) as changed:
        await read(services, version, "notes.txt")
    assert changed.value.reason == "EXTERNAL_CHANGED"
    (directory / "t.csv").unlink()
    with pytest.raises(NotFound) as gone:
        await read(services, version, "t.csv")
    assert gone.value.reason == "EXTERNAL_MISSING"
    before = await counts(services)
    for uri, error, reason in (("file:///etc", PermissionDenied, "SOURCE_NOT_ALLOWED"),
                               (f"{directory.as_uri()}/../../..", PermissionDenied, "SOURCE_NOT_ALLOWED"),
                               (f"{directory.as_uri()}/missing", NotFound, "SOURCE_NOT_FOUND"),
                               (f"s3://bucket/{directory.name}", FailedPrecondition, "SOURCE_UNSUPPORTED")):
        with pytest.raises(error) as refused:
            await services.registrations.register(CALLER, RegisterRequest(DATASET, Registration(uri)))
        assert refused.value.reason == reason, uri
    assert await counts(services) == before
