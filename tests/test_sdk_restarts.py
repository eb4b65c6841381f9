"""The SDK rides out a server restart inside its retry budget: a real server process is killed (SIGKILL)
and started again on the same port about five seconds later, and the caller never retries by hand."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import quarry
from quarry.v1 import upload_pb2

from tests.sdk_support import provision, write_random_file
from tests.support import QuarryProcess, ServerHandle, start_server, wait_serving

MiB = 1 << 20
PART = 16 * MiB
OUTAGE = 5.0  # seconds the server stays down: longer than the old retries lasted (~3 s), well inside 60 s

# Each test waits out a real restart (~10 s): the acceptance tier runs them, `make test` does not.
pytestmark = [pytest.mark.slow, pytest.mark.acceptance]


@pytest.fixture
def own_server(stack_envs: dict[str, dict[str, str]], tmp_path: Path) -> Iterator[ServerHandle]:
    """A file-store server of this test's own, to kill and start again."""
    handle = start_server(stack_envs["file"], tmp_path, "own-server", "file")
    yield handle
    handle.process.stop()


def restart(server: ServerHandle) -> None:
    """Start the server again, on the same address, and wait until it serves."""
    server.process = QuarryProcess("server", server.env, server.process.log_path).start()
    wait_serving(server.address, process=server.process)


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_upload_file_continues_across_a_server_restart(own_server: ServerHandle, stores: dict[str, Any],
                                                             tmp_path: Path, kind: str) -> None:
    source = tmp_path / "big.bin"
    size = 3 * PART + 12_345
    sha = write_random_file(source, size)
    namespace, token = provision(own_server.address)
    killed = threading.Event()

    def progress(done: int, total: int) -> None:
        # Mid-upload, with parts in flight on both streams: the server dies under the client's feet.
        if done >= 2 * PART and not killed.is_set():
            own_server.process.kill()
            killed.set()

    options = {"namespace": namespace, "token": token, "cache_dir": tmp_path / "cache", "streams": 2}
    if kind == "sync":
        def upload() -> quarry.UploadResult:
            with quarry.Client(own_server.address, **options) as client:  # type: ignore[arg-type]
                return client.upload_file(source, "restart", progress=progress)

        task = asyncio.ensure_future(asyncio.to_thread(upload))
    else:
        async def upload_async() -> quarry.UploadResult:
            async with quarry.AsyncClient(own_server.address, **options) as client:  # type: ignore[arg-type]
                return await client.upload_file(source, "restart", progress=progress)

        task = asyncio.ensure_future(upload_async())
    assert await asyncio.to_thread(killed.wait, 120), "the upload never got half-way"
    assert own_server.process.process is not None and own_server.process.process.returncode is not None
    await asyncio.sleep(OUTAGE)  # the outage itself, not a wait for something to happen
    assert not task.done(), task  # still retrying: it neither gave up nor finished without a server
    await asyncio.to_thread(restart, own_server)
    result = await asyncio.wait_for(task, 120)

    assert result.upload.state == upload_pb2.UPLOAD_STATE_STAGED and result.sha256 == sha
    assert result.streams >= 3  # at least one stream was opened again after the restart
    key = f"staging/{namespace}/{result.upload.uid}"
    store = stores["file"]
    digest = hashlib.sha256()
    async for chunk in store.read(key):
        digest.update(chunk)
    assert digest.hexdigest() == sha
    await store.delete(key)


def test_a_call_made_while_the_server_is_down_succeeds_once_it_is_back(own_server: ServerHandle,
                                                                      tmp_path: Path) -> None:
    namespace, token = provision(own_server.address)
    with quarry.Client(own_server.address, namespace=namespace, token=token, cache_dir=tmp_path) as client:
        created = client.create_dataset("restarts")
        own_server.process.kill()
        with ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            pending = pool.submit(client.get_dataset, "restarts")
            time.sleep(OUTAGE)  # the outage itself, not a wait for something to happen
            assert not pending.done(), pending  # still retrying, not failed
            restart(own_server)
            dataset = pending.result(timeout=60)
    assert dataset.uid == created.uid and time.monotonic() - started >= OUTAGE
