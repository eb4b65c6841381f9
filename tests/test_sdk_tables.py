"""The SDK reads versions as files and tables (both stores): `open`, `read_table`, `to_pandas`, `dataset`.

Every read is compared with the source files; what the server sent is read off its metrics
(`quarry_read_bytes_total`), so projection and row-group pruning are seen to fetch less, not assumed to.
"""

from __future__ import annotations

import asyncio
import io
import re

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import quarry
from quarry._remote_file import BLOCK_BYTES

from tests.reading import PARQUET_ROWS, Published
from tests.support import ServerHandle, read_metrics

FOOTER_ALLOWANCE = 160 << 10  # pyarrow's footer read (64 KiB) and the blocks around the chunks


def served(published: Published) -> int:
    """Bytes of files the server has sent over ReadFile so far."""
    return served_by(published.server)


def served_by(server: ServerHandle) -> int:
    """Bytes of files a server has sent over ReadFile so far."""
    text = read_metrics(server.metrics_port)
    found = re.search(r'^quarry_read_bytes_total\{protocol="grpc"\} ([0-9.e+]+)$', text, re.M)
    return int(float(found.group(1))) if found else 0


def test_open_is_a_seekable_file_over_the_version(published: Published) -> None:
    source = published.source("parts/p1.parquet")
    with published.client() as client:
        file = client.open("lib", "parts/p1.parquet", version=1)
        assert file.size == len(source) and file.seekable() and file.version == published.version
        assert file.read(4) == b"PAR1"
        file.seek(-8, io.SEEK_END)
        assert file.read() == source[-8:] and file.read(10) == b""
        for offset, length in [(100, 10), (90, 30), (len(source) // 2, 70_000), (0, len(source))]:
            file.seek(offset)
            assert file.read(length) == source[offset:offset + length]
        # pyarrow reads it like any file: the footer, then the pages.
        file.seek(0)
        assert pq.ParquetFile(file).read().equals(published.tables["parts/p1.parquet"])
        # "latest" is pinned when the file is opened: its reads come from that version, whatever happens later.
        assert client.open("lib", "notes.txt").version == published.version
        assert client.open("lib", "notes.txt").read() == published.source("notes.txt")
        with pytest.raises(quarry.NotFound) as missing:
            client.open("lib", "parts/p1")  # a prefix of a path is not a file
        assert missing.value.reason == "FILE_NOT_FOUND"


def test_small_reads_near_each_other_cost_one_call(published: Published) -> None:
    with published.client() as client:
        file = client.open("lib", "blob.bin", version=1)
        before = served(published)
        pieces = b"".join(file.read(1000) for _ in range(200))  # 200 KB, sequential
        assert pieces == published.source("blob.bin")[:200_000]
        assert file.fetches <= 2 and served(published) - before == file.bytes_fetched
        file.seek(10)
        assert file.read(5) == published.source("blob.bin")[10:15] and file.fetches <= 2  # from the cache


@pytest.mark.parametrize("path", ["sales.csv", "events/e1.jsonl", "parts/p2.parquet"])
def test_read_table_of_each_format_equals_the_source(published: Published, path: str) -> None:
    expected = published.tables[path]
    with published.client() as client:
        table = client.read_table("lib", path, version=1)
        assert table.equals(expected), (table.schema, expected.schema)
        projected = client.read_table("lib", path, columns=[expected.column_names[-1], expected.column_names[0]])
        assert projected.equals(expected.select([expected.column_names[-1], expected.column_names[0]]))
        name = expected.column_names[0]
        half = expected.num_rows // 2
        expression = pc.field(name) < half if expected.schema.field(name).type == pa.int64() else \
            pc.field(name) == expected[name][0]
        filtered = client.read_table("lib", path, filter=expression)
        assert filtered.equals(expected.filter(expression))
        frame = client.to_pandas("lib", path, columns=[name])
        assert frame[name].tolist() == expected[name].to_pylist()


def test_parquet_reads_fetch_only_the_columns_and_row_groups_needed(published: Published) -> None:
    size = len(published.source("parts/p2.parquet"))
    expected = published.tables["parts/p2.parquet"]
    with published.client() as client:
        before = served(published)
        whole = client.read_table("lib", "parts/p2.parquet")
        everything = served(published) - before
        assert whole.num_rows == PARQUET_ROWS and everything >= size * 0.9
        before = served(published)
        one_group = client.read_table("lib", "parts/p2.parquet", columns=["x"],
                                      filter=[("id", "<", PARQUET_ROWS + 1000)])  # the first of 4 row groups
        pruned = served(published) - before
        assert one_group.equals(expected.filter(pc.field("id") < PARQUET_ROWS + 1000).select(["x"]))
        # The chunks of "x" (asked for) and "id" (filtered on) in the first row group, plus the footer.
        group = pq.ParquetFile(io.BytesIO(published.source("parts/p2.parquet"))).metadata.row_group(0)
        needed = sum(group.column(i).total_compressed_size for i in (0, 1))
        assert pruned <= needed + FOOTER_ALLOWANCE and pruned < everything / 2, \
            f"{pruned} of {size} bytes for two columns of one row group ({needed} bytes)"
        before = served(published)
        client.read_table("lib", "parts/p2.parquet", columns=["label"])
        labels = sum(pq.ParquetFile(io.BytesIO(published.source("parts/p2.parquet"))).metadata.row_group(g).column(2)
                     .total_compressed_size for g in range(4))
        # Each small chunk (one per row group) costs one block at most.
        assert served(published) - before <= labels + FOOTER_ALLOWANCE + 4 * BLOCK_BYTES


def test_dataset_over_the_parquet_files(published: Published) -> None:
    ds_expected = pa.concat_tables([published.tables["parts/p1.parquet"], published.tables["parts/p2.parquet"]])
    with published.client() as client:
        data = client.dataset("lib", format="parquet")
        assert sorted(data.files) == ["parts/p1.parquet", "parts/p2.parquet"]
        assert data.to_table().sort_by("id").equals(ds_expected)
        assert data.count_rows(filter=pc.field("id") >= 2 * PARQUET_ROWS - 5_000) == 5_000
        assert data.to_table(columns=["label"], filter=pc.field("label") == "l3").num_rows == \
            ds_expected.filter(pc.field("label") == "l3").num_rows
        csv = client.dataset("lib", version=1, prefix="sales", format="csv")
        assert csv.to_table().equals(published.tables["sales.csv"])
        with pytest.raises(quarry.UsageError, match="several formats"):
            client.dataset("lib")
        with pytest.raises(quarry.UsageError, match="no parquet files under 'events/'"):
            client.dataset("lib", format="parquet", prefix="events/")


def test_bad_reads_say_what_is_wrong(published: Published) -> None:
    with published.client() as client:
        with pytest.raises(quarry.NotFound) as caught:
            client.read_table("lib", "sales.csv", version=9)
        assert caught.value.reason == "VERSION_NOT_FOUND"
        with pytest.raises(quarry.NotFound) as caught:
            client.read_table("lib", "nope.csv")
        assert caught.value.reason == "FILE_NOT_FOUND"
        with pytest.raises(quarry.UsageError, match="'notes.txt' .* is TEXT, not a table"):
            client.read_table("lib", "notes.txt")
        with pytest.raises(quarry.UsageError, match="no column 'nope' in 'sales.csv'; its columns: id, region, amount"):
            client.read_table("lib", "sales.csv", columns=["id", "nope"])
        with pytest.raises(quarry.UsageError, match="invalid filter"):
            client.read_table("lib", "sales.csv", filter=[("id", "~~", 3)])
        with pytest.raises(quarry.NotFound):
            client.open("nolib", "sales.csv")


async def test_async_client_reads_tables_off_the_event_loop(published: Published) -> None:
    async with quarry.AsyncClient(published.server.address, namespace=published.namespace, token=published.token,
                                  cache_dir=published.root.parent / "cache") as client:
        table = await client.read_table("lib", "events/e1.jsonl", columns=["value"])
        assert table.equals(published.tables["events/e1.jsonl"].select(["value"]))
        frame = await client.to_pandas("lib", "sales.csv", filter=pc.field("region") == "west")
        assert len(frame) == 500
        data = await client.dataset("lib", format="parquet")
        assert (await asyncio.to_thread(data.count_rows)) == 2 * PARQUET_ROWS
        file = await client.open("lib", "blob.bin")
        assert await asyncio.to_thread(file.read, 300) == published.source("blob.bin")[:300]
        unread = await client.open("lib", "sales.csv")
        with pytest.raises(quarry.UsageError, match="from a thread"):
            unread.read(10)  # on the event loop its fetch would wait for the loop itself
        with pytest.raises(quarry.UsageError, match="not a table"):
            await client.read_table("lib", "blob.bin")
