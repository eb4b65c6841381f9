"""Reading a 1 GB Parquet file on the local store (`make test-big`, not `make test`: it takes minutes).

Flight DoGet streams the whole file while the server's resident memory stays within 200 MiB of where it
started; pandas reading two of its ten columns through `quarry://` makes the server send less than a third
of the file (counted by the server: `quarry_read_bytes_total`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.flight as flight
import pytest
import quarry

from bench.big_parquet import COLUMNS, make_big_parquet
from tests.sdk_support import provision
from tests.support import QuarryProcess, ServerHandle
from tests.test_files import RssSampler, proc_status
from tests.test_sdk_tables import served_by

pytestmark = pytest.mark.big

GB = 1 << 30
MiB = 1 << 20


@dataclass
class BigParquet:
    """A 1 GB Parquet file in version 1 of dataset "big", in a namespace of its own."""

    server: ServerHandle
    namespace: str
    path: Path
    size: int
    rows: int
    token: str

    @property
    def version(self) -> str:
        return f"namespaces/{self.namespace}/datasets/big/versions/1"


@pytest.fixture(scope="module")
def big(server_file: ServerHandle, worker_file: QuarryProcess,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigParquet]:
    path = tmp_path_factory.mktemp("big") / "big.parquet"
    rows = make_big_parquet(path, GB)
    namespace, token = provision(server_file.address)
    with quarry.Client(server_file.address, namespace=namespace, token=token,
                       cache_dir=path.parent / "cache") as client:
        client.upload_file(path, "big", "big.parquet", wait=True, wait_timeout=900)
        yield BigParquet(server_file, namespace, path, path.stat().st_size, rows, token)
        client.delete_dataset("big")
    path.unlink()


@pytest.mark.timeout(900)
def test_flight_doget_of_1_gb_keeps_server_memory_flat(big: BigParquet) -> None:
    pid = big.server.process.pid
    client = flight.connect(big.server.flight_location)
    call = flight.FlightCallOptions(headers=[(b"x-quarry-namespace", big.namespace.encode()),
                                             (b"authorization", f"Bearer {big.token}".encode())])
    ticket = flight.Ticket(json.dumps({"version": big.version, "path": "big.parquet"}))  # the whole file at once
    baseline = proc_status(pid, "VmRSS")
    rows = size = 0
    started = time.perf_counter()
    with RssSampler(pid) as rss:
        for chunk in client.do_get(ticket, call):
            rows += chunk.data.num_rows
            size += chunk.data.nbytes
    seconds = time.perf_counter() - started
    client.close()
    growth = rss.peak - baseline
    print(f"\nFlight DoGet of {big.size / MiB:.0f} MiB: {rows / seconds:,.0f} rows/s, "
          f"{big.size / seconds / 1e6:,.0f} MB/s; server RSS {baseline / MiB:.0f} MiB -> peak "
          f"{rss.peak / MiB:.0f} MiB (+{growth / MiB:.0f} MiB)")
    assert rows == big.rows and size >= big.rows * COLUMNS * 8
    assert growth < 200 * MiB, f"server RSS grew by {growth / MiB:.0f} MiB while streaming 1 GB through Flight"


@pytest.mark.timeout(900)
def test_pandas_reads_two_columns_of_1_gb_fetching_under_a_third(big: BigParquet) -> None:
    before = served_by(big.server)
    frame = pd.read_parquet(f"quarry://{big.namespace}/big@1/big.parquet", columns=["c3", "c7"],
                            storage_options={"address": big.server.address, "token": big.token})
    fetched = served_by(big.server) - before
    print(f"\npandas.read_parquet of 2 of {COLUMNS} columns: the server sent {fetched / MiB:.0f} MiB of "
          f"{big.size / MiB:.0f} MiB ({fetched / big.size:.1%})")
    assert list(frame.columns) == ["c3", "c7"] and len(frame) == big.rows
    assert fetched < big.size / 3
