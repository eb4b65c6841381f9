"""WriteFile: small files validated, kept inline in Postgres, committed in one call, read like any other file.

The use case runs in this process over a store that counts its calls (an inline write makes none); then the
same through a real server: the SDK's write_text and reads (ReadFile, preview, stats, read_table, Arrow
Flight), and `quarry put`.
"""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.flight as flight
import pytest
import quarry
from quarry.v1 import version_pb2

from server.domain.caller import Caller
from server.domain.datasets import NewDataset
from server.domain.inline import InlineWrite
from server.domain.services import Services
from server.embedded import EmbeddedRedis
from server.model.datasets import DatasetRules, FileFormat
from server.model.errors import BaseMoved, InvalidArgument, InvalidFile, NotSupported, ResourceExhausted, RuleViolation
from server.model.namespaces import Quota
from tests.conftest import create_database, redis_url
from tests.lifecycle_support import CountingStore, counted_services, publish
from tests.samples import csv_sample
from tests.sdk_support import Cli, assert_one_line_error, new_namespace
from tests.support import ServerHandle, eventually

CALLER = Caller("inline")
LIMIT = 64 * 1024
CSV = "id,name,score\n" + "".join(f"{i},n{i % 3},{i / 4}\n" for i in range(200))


def ds(name: str) -> str:
    return f"namespaces/{CALLER.namespace}/datasets/{name}"


@pytest.fixture
async def inline(stack_envs: dict[str, dict[str, str]], postgres: object, redis_server: EmbeddedRedis,
                 tmp_path: Path) -> AsyncIterator[tuple[Services, CountingStore]]:
    env = dict(stack_envs["file"], QUARRY_DATABASE_URL=await create_database(postgres, "inline"),  # type: ignore[arg-type]
               QUARRY_REDIS_URL=redis_url(redis_server, 4), QUARRY_STORAGE_URL=f"file://{tmp_path / 'objects'}")
    async with counted_services(env, QUARRY_INLINE_MAX_BYTES=str(LIMIT), QUARRY_GC_GRACE_SECONDS="0.2",
                                QUARRY_DELETED_RETENTION_DAYS=repr(0.5 / 86400)) as built:
        await built[0].namespaces.create(CALLER, CALLER.namespace, Quota(), None)
        yield built


async def state(services: Services) -> tuple[int, int, int]:
    async with services.db.connection() as connection:
        row = await connection.fetchrow(
            """SELECT (SELECT count(*) FROM versions) AS v, (SELECT count(*) FROM inline_objects) AS i,
                      (SELECT count(*) FROM fresh_objects) AS o""")
    return row["v"], row["i"], row["o"]


async def test_an_inline_file_is_validated_kept_in_postgres_and_read_like_any_file(
        inline: tuple[Services, CountingStore]) -> None:
    services, store = inline
    await publish(services, CALLER, "conf", [csv_sample(20)])
    store.reset()
    version = await services.inline.write(CALLER, InlineWrite(ds("conf"), "tables/small.csv", CSV.encode(),
                                                             message="a small table"))
    assert store.calls == []  # not one call to the object store
    assert version.number == 2 and version.message == "a small table" and version.file_count == 2
    file = await services.files.file(CALLER, version.name, "tables/small.csv")
    assert file.inline and file.format == FileFormat.CSV and file.row_count == 200 and file.size == len(CSV)
    read = await services.files.read(CALLER, version.name, "tables/small.csv", 10, 25)
    assert b"".join([c async for _, c in read.chunks()]) == CSV.encode()[10:35]
    preview = await services.files.preview(CALLER, version.name, "tables/small.csv", 3)
    assert preview.row_count == 3 and preview.total_rows == 200
    stats = {s.name: s for s in (await services.files.stats(CALLER, version.name, "tables/small.csv")).stats}
    assert stats["score"].mean == pytest.approx(sum(i / 4 for i in range(200)) / 200)
    assert stats["name"].top_values == (("n0", 67), ("n1", 67), ("n2", 66))
    # Flight's reads (the domain's table stream) parse it like a stored CSV.
    plan = await services.tables.plan(CALLER, version.name, "tables/small.csv")
    opened = await services.tables.open_part(CALLER, plan.parts[0])
    assert sum(b.num_rows for b in opened.batches()) == 200
    with pytest.raises(NotSupported) as no_url:
        await services.files.download_url(CALLER, version.name, "tables/small.csv", 60)
    assert no_url.value.reason == "NOT_IN_OBJECT_STORE"
    # The next version carries it over; the same content again is one row.
    again = await services.inline.write(CALLER, InlineWrite(ds("conf"), "copy.csv", CSV.encode()))
    assert {f.path for f in (await services.versions.get(CALLER, again.name, with_files=True)).files} == \
        {"data/table.csv", "tables/small.csv", "copy.csv"}
    assert (await state(services))[1] == 1
    # A text file, a replay by request id.
    notes = InlineWrite(ds("conf"), "README.md", b"# Notes\n", request_id="notes-1")
    first = await services.inline.write(CALLER, notes)
    assert (await services.inline.write(CALLER, notes)).id == first.id
    assert (await services.files.file(CALLER, first.name, "README.md")).format == FileFormat.TEXT


async def test_refused_inline_writes_leave_nothing(inline: tuple[Services, CountingStore]) -> None:
    services, _ = inline
    await services.datasets.create(CALLER, "", NewDataset("strict", rules=DatasetRules(
        allowed_formats=(FileFormat.CSV, FileFormat.JSONL))))
    await services.inline.write(CALLER, InlineWrite(ds("strict"), "a.csv", b"x,y\n1,2\n"))
    before = await state(services)
    cases = [
        (InlineWrite(ds("strict"), "big.csv", b"x\n" + b"1\n" * LIMIT), ResourceExhausted, "INLINE_TOO_LARGE"),
        (InlineWrite(ds("strict"), "ragged.csv", b"x,y\n1,2\n3\n"), InvalidFile, "RAGGED_ROW"),
        (InlineWrite(ds("strict"), "notes.txt", b"just text\n"), RuleViolation, "FORMAT_NOT_ALLOWED"),
        (InlineWrite(ds("strict"), "a.csv", b"x,z\n1,2\n"), RuleViolation, "COLUMN_REMOVED"),
        (InlineWrite(ds("strict"), "b.csv", b"x\n1\n", message="m" * 16385), InvalidArgument, "INVALID_MESSAGE"),
        (InlineWrite(ds("strict"), "b.csv", b"x\n1\n", content_type="t" * 256), InvalidArgument,
         "INVALID_CONTENT_TYPE"),
        (InlineWrite(ds("strict"), "b.csv", b"x\n1\n", base_version=f"{ds('other')}/versions/1"), InvalidArgument,
         "INVALID_BASE_VERSION"),
        (InlineWrite(ds("strict"), "../b.csv", b"x\n1\n"), InvalidArgument, "INVALID_PATH"),
    ]
    for request, error, reason in cases:
        with pytest.raises(error) as raised:
            await services.inline.write(CALLER, request)
        assert raised.value.reason == reason, request.path
    assert await state(services) == before
    # A base that moved on and changed the same path.
    await services.inline.write(CALLER, InlineWrite(ds("strict"), "a.csv", b"x,y\n5,6\n"))
    moved = await state(services)
    with pytest.raises(BaseMoved) as base:
        await services.inline.write(CALLER, InlineWrite(ds("strict"), "a.csv", b"x,y\n7,8\n",
                                                        base_version=f"{ds('strict')}/versions/1"))
    assert base.value.reason == "BASE_MOVED" and await state(services) == moved


async def test_inline_content_goes_with_the_last_version_listing_it(inline: tuple[Services, CountingStore]) -> None:
    services, _ = inline
    await services.datasets.create(CALLER, "", NewDataset("temp"))
    await services.inline.write(CALLER, InlineWrite(ds("temp"), "n.txt", b"short lived\n"))
    await services.datasets.delete(CALLER, ds("temp"), "")

    async def gone() -> bool:
        await services.sweeper.sweep()
        return (await state(services))[1:] == (0, 0)

    await eventually(gone, "the inline content collected after the purge", timeout=20)


def test_write_text_through_the_server_and_read_it_back(server_file: ServerHandle, tmp_path: Path) -> None:
    cli = Cli(server_file.address, new_namespace(), tmp_path / "cache")
    with cli.client() as client:
        client.create_dataset("cfg")
        version = client.write_text("cfg", "settings.json", json.dumps({"retries": 3}) + "\n", message="config")
        assert version.state == version_pb2.VERSION_STATE_READY and version.number == 1
        table = client.write_text("cfg", "t.csv", CSV)
        assert client.open("cfg", "settings.json").read() == b'{"retries": 3}\n'
        assert client.read_table("cfg", "t.csv").equals(pa_csv.read_csv(io.BytesIO(CSV.encode())))
        files = {f.path: f for f in client.list_version_files("cfg", table.number)}
        assert files["t.csv"].storage == version_pb2.FILE_STORAGE_INLINE
        stats = client.get_file_stats("cfg", "t.csv")
        assert [c.name for c in stats.columns] == ["id", "name", "score"] and stats.row_count == 200
        capabilities = client.get_capabilities()
        assert capabilities.max_inline_bytes == 256 * 1024
        with pytest.raises(quarry.RpcError) as too_big:
            client.write_text("cfg", "big.txt", "x" * (256 * 1024 + 1))
        assert too_big.value.reason == "INLINE_TOO_LARGE"
    assert server_file.flight_address is not None
    reader = flight.connect(f"grpc://{server_file.flight_address}")
    options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {cli.token}".encode()),
                                                (b"x-quarry-namespace", cli.namespace.encode())])
    info = reader.get_flight_info(flight.FlightDescriptor.for_path(cli.namespace, "cfg", "latest", "t.csv"), options)
    got = pa.concat_tables([reader.do_get(e.ticket, options).read_all() for e in info.endpoints])
    assert got.num_rows == 200 and got.column("id").to_pylist() == list(range(200))
    # The CLI: --text, and - for standard input.
    assert int(cli.json("put", "cfg", "note.txt", "--text", "hello")["number"]) == 3
    process = cli.popen("put", "cfg", "piped.md", "-", "--json", stdin=subprocess.PIPE)
    out, err = process.communicate("# from standard input\n", timeout=60)
    assert process.returncode == 0, err
    with cli.client() as client:
        assert client.open("cfg", "piped.md", version=json.loads(out)["number"]).read() == b"# from standard input\n"
    refused = cli.run("put", "cfg", "x.txt")
    assert_one_line_error(refused, 2)
