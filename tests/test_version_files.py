"""ListVersionFiles and the views of GetVersion and DiffVersions, over a plain generated stub (both stores).

A version of 100,000 files (its rows written straight into Postgres: uploading that many files through the
pipeline would take far longer than the point needs) pages through completely, while GetVersion stays a few
hundred bytes (in `make test-big`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import grpc
import pytest
import quarry
from grpc import aio
from quarry.v1 import common_pb2
from quarry.v1 import dataset_service_pb2 as dpb

from tests.reading import PARQUET_ROWS, Published
from tests.sdk_support import Cli, assert_one_line_error
from tests.support import Api, ServerHandle, diff_pages, error_info, field_violations, open_api, tampered_page_token


@pytest.fixture
async def api(published: Published) -> AsyncIterator[Api]:
    client = open_api(published.server.address, published.namespace)
    yield client
    await client.channel.close()


async def list_all(api: Api, request: dpb.ListVersionFilesRequest) -> tuple[list[str], int]:
    """Every path the listing returns, following page tokens; and how many pages it took."""
    paths: list[str] = []
    pages = 0
    while True:
        page = await api.datasets.ListVersionFiles(request)
        paths += [f.path for f in page.files]
        pages += 1
        if not page.next_page_token:
            return paths, pages
        request.page_token = page.next_page_token


async def test_pages_through_every_file_by_path(api: Api, published: Published) -> None:
    latest = f"{api.parent}/datasets/lib/versions/latest"
    paths, pages = await list_all(api, dpb.ListVersionFilesRequest(parent=latest, page_size=3))
    assert paths == published.paths and pages == 3  # 7 files, 3 a page
    first = await api.datasets.ListVersionFiles(dpb.ListVersionFilesRequest(parent=latest))
    assert first.version == published.version  # "latest" answered by uid, to read exactly what was listed
    by_path = {f.path: f for f in first.files}
    assert by_path["parts/p1.parquet"].sha256 and by_path["parts/p1.parquet"].row_count == PARQUET_ROWS
    assert common_pb2.FileFormat.Name(by_path["events/e1.jsonl"].format) == "FILE_FORMAT_JSONL"
    assert by_path["blob.bin"].size_bytes == 256_000


async def test_prefix_and_formats_filter(api: Api, published: Published) -> None:
    def listing(**fields: object) -> dpb.ListVersionFilesRequest:
        return dpb.ListVersionFilesRequest(parent=published.version, **fields)  # type: ignore[arg-type]

    assert (await list_all(api, listing(path_prefix="parts/")))[0] == [
        "parts/p1.parquet", "parts/p1.parquet.md5", "parts/p2.parquet"]
    # A whole path matches its file (and any path that extends it); a prefix that matches nothing lists nothing.
    assert (await list_all(api, listing(path_prefix="parts/p1.parquet")))[0] == ["parts/p1.parquet",
                                                                                  "parts/p1.parquet.md5"]
    assert (await list_all(api, listing(path_prefix="nothing/")))[0] == []
    assert (await list_all(api, listing(formats=[common_pb2.FILE_FORMAT_PARQUET, common_pb2.FILE_FORMAT_CSV])))[0] \
        == ["parts/p1.parquet", "parts/p2.parquet", "sales.csv"]
    assert (await list_all(api, listing(path_prefix="parts/", formats=[common_pb2.FILE_FORMAT_TEXT],
                                        page_size=1)))[0] == ["parts/p1.parquet.md5"]


async def test_views_leave_schemas_out_by_default(api: Api, published: Published) -> None:
    basic = await api.datasets.ListVersionFiles(dpb.ListVersionFilesRequest(parent=published.version))
    assert all(not f.columns and not f.HasField("report") for f in basic.files)
    full = await api.datasets.ListVersionFiles(dpb.ListVersionFilesRequest(parent=published.version,
                                                                           view=dpb.VERSION_VIEW_FULL))
    sales = next(f for f in full.files if f.path == "sales.csv")
    assert [(c.name, c.type) for c in sales.columns] == [("id", "int64"), ("region", "string"), ("amount", "double")]
    assert sales.report.arrow_schema and sales.report.row_count == 2000
    version = (await api.datasets.GetVersion(dpb.GetVersionRequest(name=published.version))).version
    assert version.file_count == 7 and not version.files
    assert version.ByteSize() < 400
    with_files = (await api.datasets.GetVersion(dpb.GetVersionRequest(name=published.version,
                                                                      view=dpb.VERSION_VIEW_FULL))).version
    assert [f.path for f in with_files.files] == published.paths and with_files.files[0].HasField("report")


async def test_bad_listings_are_refused_with_their_reason(api: Api, published: Published) -> None:
    async def refused(request: dpb.ListVersionFilesRequest) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(aio.AioRpcError) as caught:
            await api.datasets.ListVersionFiles(request)
        return caught.value.code(), error_info(caught.value)[0]

    version = published.version
    page = await api.datasets.ListVersionFiles(dpb.ListVersionFilesRequest(parent=version, page_size=2))
    # A token is bound to its listing: another prefix, or bytes changed, is refused.
    assert await refused(dpb.ListVersionFilesRequest(parent=version, path_prefix="parts/",
                                                     page_token=page.next_page_token)) == \
        (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN")
    tampered = tampered_page_token(page.next_page_token)
    assert await refused(dpb.ListVersionFilesRequest(parent=version, page_token=tampered)) == \
        (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN")
    assert await refused(dpb.ListVersionFilesRequest(parent=version, page_size=-1)) == \
        (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_SIZE")
    assert await refused(dpb.ListVersionFilesRequest(parent=version, formats=[common_pb2.FILE_FORMAT_UNSPECIFIED])) \
        == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FORMAT")
    assert await refused(dpb.ListVersionFilesRequest(parent=version, view=7)) == \
        (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_VIEW")
    assert await refused(dpb.ListVersionFilesRequest(parent=f"{api.parent}/datasets/lib/versions/9")) == \
        (grpc.StatusCode.NOT_FOUND, "VERSION_NOT_FOUND")
    assert await refused(dpb.ListVersionFilesRequest(parent=f"{api.parent}/datasets/nope/versions/1")) == \
        (grpc.StatusCode.NOT_FOUND, "DATASET_NOT_FOUND")
    assert await refused(dpb.ListVersionFilesRequest(parent=f"{api.parent}/datasets/lib")) == \
        (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_NAME")
    assert await refused(dpb.ListVersionFilesRequest(parent="namespaces/elsewhere/datasets/lib/versions/1")) == \
        (grpc.StatusCode.PERMISSION_DENIED, "NAMESPACE_NOT_GRANTED")
    with pytest.raises(aio.AioRpcError) as caught:
        await api.datasets.ListVersionFiles(dpb.ListVersionFilesRequest(parent=version, view=7))
    assert field_violations(caught.value) == ["view"]


def test_sdk_lists_files(published: Published) -> None:
    with published.client() as client:
        assert [f.path for f in client.list_version_files("lib", page_size=2)] == published.paths
        parquet = list(client.list_version_files("lib", 1, prefix="parts/", formats=["parquet"], view="full"))
        assert [f.path for f in parquet] == ["parts/p1.parquet", "parts/p2.parquet"] and parquet[0].columns
        with pytest.raises(quarry.UsageError, match="unknown file format"):
            list(client.list_version_files("lib", formats=["xlsx"]))
        with pytest.raises(quarry.NotFound):
            list(client.list_version_files("lib", 5))


# --- a version of 100,000 files -------------------------------------------------------------------------------

MANY = 100_000
SHA = "0" * 64


async def many_files(pool: asyncpg.Pool, namespace: str, dataset_uid: str) -> None:
    """Versions 1 (one file) and 2 (100,000 files, current) of a dataset, written as promotion would."""
    dataset = uuid.UUID(dataset_uid)
    key = f"fresh/{namespace}/{dataset}/objects/{SHA}"
    async with pool.acquire() as connection, connection.transaction():
        namespace_id = await connection.fetchval("SELECT id FROM namespaces WHERE name = $1", namespace)
        await connection.execute("""INSERT INTO fresh_objects (key, namespace_id, dataset_id, sha256, size_bytes)
                                    VALUES ($1, $2, $3, $4, 10)""", key, namespace_id, dataset, SHA)
        ids = []
        for number, count in ((1, 1), (2, MANY)):
            version = uuid.uuid4()
            await connection.execute(
                """INSERT INTO versions (id, dataset_id, base_id, parent_id, number, message, state, author, file_count,
                                         total_bytes, total_rows, ready_time)
                   VALUES ($1, $2, $3, $3, $4, '', 'READY', 'test', $5, $6, 0, now())""",
                version, dataset, ids[-1] if ids else None, number, count, count * 10)
            await connection.execute(
                """INSERT INTO version_files (version_id, path, object_key, size_bytes, sha256, format)
                   SELECT $1, 'f/' || lpad(i::text, 6, '0') || '.bin', $2, 10, $3, 'BINARY'
                   FROM generate_series(1, $4) AS i""", version, key, SHA, count)
            ids.append(version)
        await connection.execute("UPDATE datasets SET current_version_id = $2, state = 'ACTIVE' WHERE id = $1",
                                 dataset, ids[-1])


@pytest.mark.big  # about 20 s: `make test-big`
async def test_a_version_of_100_000_files(server_file: ServerHandle, pools: dict[str, asyncpg.Pool]) -> None:
    # Metadata only, so the file store's server will do: the same code serves both stores.
    api = open_api(server_file.address)
    try:
        dataset = (await api.datasets.CreateDataset(dpb.CreateDatasetRequest(dataset_id="many"))).dataset
        await many_files(pools["file"], api.namespace, dataset.uid)
        name = f"{dataset.name}/versions/latest"
        started = time.monotonic()
        paths, pages = await list_all(api, dpb.ListVersionFilesRequest(parent=name, page_size=1000))
        listed = time.monotonic() - started
        assert len(paths) == MANY and paths == sorted(paths) and len(set(paths)) == MANY and pages == 100
        version = (await api.datasets.GetVersion(dpb.GetVersionRequest(name=name))).version
        size = version.ByteSize()
        assert version.number == 2 and version.file_count == MANY and not version.files and size < 400
        print(f"\n100,000 files: {pages} pages of 1000 in {listed:.1f} s; GetVersion answers {size} bytes")
        with pytest.raises(aio.AioRpcError) as caught:
            await api.datasets.GetVersion(dpb.GetVersionRequest(name=name, view=dpb.VERSION_VIEW_FULL))
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(caught.value)[0] == "TOO_MANY_FILES"
        # Version 1's one file is version 2's first: 99,999 added, 1 unchanged, in pages of 10,000.
        request = dpb.DiffVersionsRequest(base_version=f"{dataset.name}/versions/1", target_version=name)
        started = time.monotonic()
        pages = await diff_pages(api, request)
        diffed = time.monotonic() - started
        changed = [c.path for p in pages for c in p.changes]
        assert [len(p.changes) for p in pages] == [10_000] * 9 + [9_999] and {p.unchanged_count for p in pages} == {1}
        assert changed == sorted(changed) and len(set(changed)) == MANY - 1 and "f/000001.bin" not in changed
        assert {c.kind for p in pages for c in p.changes} == {dpb.CHANGE_KIND_ADDED}
        assert max(p.ByteSize() for p in pages) < 4 << 20
        print(f"DiffVersions of 99,999 changes: {len(pages)} pages in {diffed:.1f} s")
    finally:
        await api.channel.close()


def test_cli_ls(published: Published, tmp_path: Path) -> None:
    cli = Cli(published.server.address, published.namespace, tmp_path)
    assert [f["path"] for f in cli.json("ls", "lib@1", "parts/")] == ["parts/p1.parquet", "parts/p1.parquet.md5",
                                                                       "parts/p2.parquet"]
    assert [f["path"] for f in cli.json("ls", "lib", "--format", "jsonl", "-f", "csv")] == ["events/e1.jsonl",
                                                                                           "sales.csv"]
    table = cli.run("ls", "lib")
    assert table.returncode == 0 and "7 files" in table.stdout and "PARQUET" in table.stdout
    assert_one_line_error(cli.run("ls", "lib@9"), 1, "NOT_FOUND")
    assert_one_line_error(cli.run("ls", "lib", "-f", "xlsx"), 2)
