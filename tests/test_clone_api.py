"""CloneDataset and UndeleteDataset through the real server: their statuses and reasons on the wire, the SDK and
`quarry datasets clone|undelete`; and (`make test-big`) the clone of a 1 GiB version: under 2 s, no byte moved."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import quarry

from server.domain.caller import Caller
from server.domain.lifecycle import CloneRequest
from server.domain.upload_stream import Chunk, Finish, StreamMessage
from server.domain.uploads import NewUpload
from server.embedded import EmbeddedRedis
from server.model.namespaces import Quota
from tests.conftest import create_database, redis_url
from tests.lifecycle_support import counted_services, nothing
from tests.sdk_support import Cli, assert_one_line_error, new_namespace
from tests.support import QuarryProcess, ServerHandle

GiB = 1 << 30


def test_clone_and_undelete_through_the_sdk_and_the_cli(server_file: ServerHandle, worker_file: QuarryProcess,
                                                       tmp_path: Path) -> None:
    cli = Cli(server_file.address, new_namespace(), tmp_path / "cache")
    source = tmp_path / "a.csv"
    source.write_text("id,v\n" + "".join(f"{i},{i * 2}\n" for i in range(500)))
    with cli.client() as client:
        client.upload_file(source, "orig", wait=True)
        client.write_text("orig", "notes.md", "# v2\n")
        answer = client.clone_dataset("orig", "copy", version=1, message="a copy of v1")
        assert answer.dataset.current_version_number == 1 and answer.version.message == "a copy of v1"
        assert answer.version.cloned_from == client.get_version("orig", 1).name  # the canonical (uid) name
        assert [f.path for f in client.list_version_files("copy")] == ["a.csv"]
        assert client.open("copy", "a.csv").read() == source.read_bytes()
        with pytest.raises(quarry.RpcError) as taken:
            client.clone_dataset("orig", "copy")
        assert taken.value.code == grpc.StatusCode.ALREADY_EXISTS and taken.value.reason == "DATASET_ALREADY_EXISTS"
        with pytest.raises(quarry.RpcError) as missing:
            client.undelete_dataset("orig")
        assert missing.value.code == grpc.StatusCode.NOT_FOUND and missing.value.reason == "DATASET_NOT_FOUND"
    cloned = cli.json("datasets", "clone", "orig@2", "copy2")
    assert int(cloned["version"]["file_count"]) == 2
    shown = cli.run("datasets", "clone", "orig", "copy2")
    assert_one_line_error(shown, 1, "ALREADY_EXISTS")
    assert cli.run("datasets", "rm", "orig").returncode == 0
    restored = cli.json("datasets", "undelete", "orig")
    assert restored["state"] == "DATASET_STATE_ACTIVE" and int(restored["current_version_number"]) == 2
    with cli.client() as client:
        assert client.open("orig", "notes.md").read() == b"# v2\n"
    # A reader may not clone into its namespace, nor undelete.
    reader = Cli(server_file.address, cli.namespace, tmp_path / "reader", token=quarry_token(cli, "reader"))
    assert "writer role" in assert_one_line_error(reader.run("datasets", "clone", "orig", "mine"), 1,
                                                  "PERMISSION_DENIED")
    assert cli.run("datasets", "rm", "copy").returncode == 0
    assert "admin role" in assert_one_line_error(reader.run("datasets", "undelete", "copy"), 1, "PERMISSION_DENIED")


def quarry_token(cli: Cli, role: str) -> str:
    from tests.support import issue_token, server_operator
    return issue_token(cli.address, server_operator(cli.address), {cli.namespace: role}, principal=f"{role}-x")


async def _random_gib() -> AsyncIterator[StreamMessage]:
    for _ in range(GiB >> 20):
        yield Chunk(os.urandom(1 << 20))
    yield Finish()


@pytest.mark.big
async def test_a_clone_of_a_1_gib_version_takes_under_2_s_and_moves_no_byte(
        stack_envs: dict[str, dict[str, str]], postgres: object, redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    caller = Caller("big-clone")
    env = dict(stack_envs["file"], QUARRY_DATABASE_URL=await create_database(postgres, "bigclone"),  # type: ignore[arg-type]
               QUARRY_REDIS_URL=redis_url(redis_server, 3), QUARRY_STORAGE_URL=f"file://{tmp_path / 'objects'}")
    async with counted_services(env) as (services, store):
        await services.namespaces.create(caller, caller.namespace, Quota(), None)
        upload, _ = await services.uploads.create(caller, "", NewUpload("huge", "blob.bin", GiB))
        await services.upload_stream.write(caller, upload.name, 0, _random_gib(), nothing)
        await services.pipeline.validate_upload(upload.id)
        committed = await services.versions.commit(caller, f"namespaces/{caller.namespace}/datasets/huge", "",
                                                   [upload.name], [], "1 GiB", "")
        await services.pipeline.promote_version(committed.id)
        store.reset()
        started = time.perf_counter()
        dataset, version = await services.lifecycle.clone(
            caller, CloneRequest(f"namespaces/{caller.namespace}/datasets/huge", "", f"c-{uuid.uuid4().hex[:6]}"))
        elapsed = time.perf_counter() - started
        assert version.total_bytes == GiB and dataset.current_version_number == 1
        assert elapsed < 2.0, elapsed
        assert store.calls == [] and store.bytes_read == store.bytes_written == 0
        print(f"clone of a 1 GiB version: {elapsed * 1e3:.1f} ms, {len(store.calls)} store calls, "
              f"{store.bytes_read + store.bytes_written} bytes moved")
