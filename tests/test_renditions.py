"""The dataset rule normalize_to_parquet: promotion writes a zstd Parquet rendition of each CSV and JSON Lines
file beside it; previews, Flight's table reads and the SDK's read_table use it; the collector keeps it while a
version lists it; a file the conversion refuses fails the version and leaves nothing.
"""

from __future__ import annotations

import dataclasses
import io
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
import quarry
from quarry.v1 import dataset_pb2

from server.domain.caller import Caller
from server.domain.datasets import NewDataset
from server.domain.renditions import convert
from server.domain.services import Services
from server.domain.uploads import NewUpload
from server.embedded import EmbeddedRedis
from server.model.datasets import DatasetRules, FileFormat
from server.model.errors import InvalidFile
from server.model.namespaces import Quota
from server.model.versions import FileReport, VersionFile, VersionState
from server.storage.objects.memory import ChunkedBytes
from tests.conftest import create_database, redis_url
from tests.lifecycle_support import CountingStore, counted_services, messages, nothing, publish
from tests.samples import csv_sample, jsonl_sample, parquet_sample
from tests.sdk_support import Cli, new_namespace
from tests.support import QuarryProcess, ServerHandle, eventually

CALLER = Caller("renditions")
RAGGED = b"a,b\n1,2\n3\n4,5\n"


def ds(name: str) -> str:
    return f"namespaces/{CALLER.namespace}/datasets/{name}"


@pytest.fixture
async def normalizing(stack_envs: dict[str, dict[str, str]], postgres: object, redis_server: EmbeddedRedis,
                      tmp_path: Path) -> AsyncIterator[tuple[Services, CountingStore]]:
    env = dict(stack_envs["file"], QUARRY_DATABASE_URL=await create_database(postgres, "renditions"),  # type: ignore[arg-type]
               QUARRY_REDIS_URL=redis_url(redis_server, 13), QUARRY_STORAGE_URL=f"file://{tmp_path / 'objects'}")
    async with counted_services(env, QUARRY_GC_GRACE_SECONDS="0.2",
                                QUARRY_DELETED_RETENTION_DAYS=repr(0.5 / 86400)) as built:
        services = built[0]
        await services.namespaces.create(CALLER, CALLER.namespace, Quota(), None)
        await services.datasets.create(CALLER, "", NewDataset("norm", rules=DatasetRules(normalize_to_parquet=True)))
        yield built


async def fresh(services: Services) -> set[str]:
    return {o.key async for o in services.uploads.store.list_objects("fresh/")}


async def test_promotion_writes_renditions_that_reads_use(normalizing: tuple[Services, CountingStore]) -> None:
    services, store = normalizing
    table_csv, events = csv_sample(3000), jsonl_sample(800)
    version = await publish(services, CALLER, "norm", [table_csv, events, parquet_sample(1000)])
    files = {f.path: f for f in version.files}
    assert files["table.parquet"].rendition is None
    for path, sample in ((table_csv.path, table_csv), (events.path, events)):
        rendition = files[path].rendition
        assert rendition is not None and rendition.key != files[path].object_key
        data = b"".join([c async for c in services.uploads.store.read(rendition.key)])
        parquet = pq.ParquetFile(io.BytesIO(data))
        assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"
        assert parquet.read().num_rows == sample.rows
    expected = pa_csv.read_csv(io.BytesIO(table_csv.data))
    assert pq.read_table(io.BytesIO(b"".join([c async for c in services.uploads.store.read(
        files[table_csv.path].rendition.key)]))).equals(expected)  # type: ignore[union-attr]
    # Previews and Flight's reads of the CSV come from the rendition (random reads of Parquet, not text).
    store.reset()
    preview = await services.files.preview(CALLER, version.name, table_csv.path, 10)
    assert preview.row_count == 10 and preview.total_rows == 3000 and store.calls == ["open_random"]
    plan = await services.tables.plan(CALLER, version.name, table_csv.path)
    opened = await services.tables.open_part(CALLER, plan.parts[0])
    assert opened.file.format == FileFormat.PARQUET
    assert pa.Table.from_batches(list(opened.batches()), opened.schema).equals(expected)
    read = await services.files.read(CALLER, version.name, table_csv.path, 0, 4, rendition=True)
    assert b"".join([c async for _, c in read.chunks()]) == b"PAR1"
    # The same content again is rendered once; an unchanged file keeps its rendition in the next version.
    store.reset()
    again = await publish(services, CALLER, "norm", [csv_sample(3000, path="copy.csv")])
    assert store.calls.count("put") == 0
    carried = {f.path: f for f in again.files}
    assert carried["copy.csv"].rendition == carried[table_csv.path].rendition == files[table_csv.path].rendition


async def test_renditions_are_collected_with_the_last_version_listing_them(
        normalizing: tuple[Services, CountingStore]) -> None:
    services, _ = normalizing
    version = await publish(services, CALLER, "norm", [csv_sample(100)])
    key = version.files[0].rendition.key  # type: ignore[union-attr]
    for _ in range(3):
        await services.sweeper.sweep()
    assert key in await fresh(services)  # listed: kept past the grace period
    await services.datasets.delete(CALLER, ds("norm"), "")

    async def collected() -> bool:
        await services.sweeper.sweep()
        return key not in await fresh(services)

    await eventually(collected, "the rendition collected after the purge", timeout=20)


def scratch_files() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("quarry-rendition-*"))


async def test_a_ragged_csv_is_refused_and_leaves_nothing(normalizing: tuple[Services, CountingStore]) -> None:
    services, store = normalizing
    before = await fresh(services)
    upload, _ = await services.uploads.create(CALLER, "", NewUpload("norm", "ragged.csv", len(RAGGED)))
    await services.upload_stream.write(CALLER, upload.name, 0, messages(RAGGED), nothing)
    committed = await services.versions.commit(CALLER, ds("norm"), "", [upload.name], [], "ragged", "")
    await services.pipeline.validate_upload(upload.id)
    await services.pipeline.promote_version(committed.id)
    failed = await services.versions.get(CALLER, f"{ds('norm')}/versions/{committed.id}")
    assert failed.state == VersionState.FAILED and failed.failure is not None
    assert failed.failure.reason == "RAGGED_ROW"
    assert await fresh(services) == before
    # A ragged file that reached promotion some other way: the converter refuses it too, before anything is
    # stored or recorded, and its temporary file goes.
    key = "fresh/renditions/ragged-raw"

    async def one() -> AsyncIterator[bytes]:
        yield RAGGED

    await services.uploads.store.put(key, one())
    head = await services.versions.dataset(CALLER, ds("norm"))
    file = dataclasses.replace(failed_file(), object_key=key, size=len(RAGGED))
    scratch = scratch_files()
    store.reset()
    async with services.db.connection() as connection:
        rows = await connection.fetchval("SELECT count(*) FROM fresh_objects")
    with pytest.raises(InvalidFile) as refused:
        await services.pipeline.renditions.render(head.namespace, head.namespace_id, head.id, file)
    assert refused.value.reason == "RAGGED_ROW"
    assert "put" not in store.calls and await fresh(services) == before | {key} and scratch_files() == scratch
    async with services.db.connection() as connection:
        assert await connection.fetchval("SELECT count(*) FROM fresh_objects") == rows
    with pytest.raises(InvalidFile) as bad_json:
        convert(ChunkedBytes(b'{"a": 1}\n{"a": "x"}\n'), FileFormat.JSONL, pa.schema([("a", pa.int64())]),
                Path(tempfile.mkdtemp()) / "out.parquet")
    assert bad_json.value.reason == "RENDITION_FAILED"


def failed_file() -> VersionFile:
    schema = pa.schema([("a", pa.int64()), ("b", pa.int64())])
    return VersionFile(path="ragged.csv", object_key="", size=0, sha256="0" * 64, format=FileFormat.CSV,
                       content_type="", columns=(), row_count=0,
                       report=FileReport(FileFormat.CSV, "extension", 0, 0, 0), stats=(),
                       arrow_schema=schema.serialize().to_pybytes())


def test_the_sdk_reads_the_rendition_and_ls_shows_it(server_file: ServerHandle, worker_file: QuarryProcess,
                                                     tmp_path: Path) -> None:
    cli = Cli(server_file.address, new_namespace(), tmp_path / "cache")
    sample = csv_sample(2000)
    local = tmp_path / "table.csv"
    local.write_bytes(sample.data)
    with cli.client() as client:
        client.create_dataset("n", rules=dataset_pb2.DatasetRules(normalize_to_parquet=True))
        client.upload_file(local, "n", "t.csv", wait=True)
        listed = list(client.list_version_files("n"))
        assert listed[0].HasField("rendition") and listed[0].rendition.size_bytes > 0
        table = client.read_table("n", "t.csv", columns=["id", "score"])
        assert table.equals(pa_csv.read_csv(io.BytesIO(sample.data)).select(["id", "score"]))
        head = b"".join(m.data for m in client.read_file("n", "t.csv", limit=4))
        assert head == sample.data[:4]
        client.write_text("n", "plain.txt", "no rendition\n")
        with pytest.raises(quarry.RpcError) as none:
            list(client.read_file("n", "plain.txt", rendition=True))
        assert none.value.code == grpc.StatusCode.FAILED_PRECONDITION and none.value.reason == "NO_RENDITION"
    shown = cli.run("ls", "n")
    assert shown.returncode == 0, shown.stderr
    assert "t.csv (rendition)" in shown.stdout and "PARQUET" in shown.stdout
