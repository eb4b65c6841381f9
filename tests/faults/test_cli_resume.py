"""A 1 GB upload whose client process is killed, then run again: it finishes without re-sending a part."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path

import pytest

from server.model.objects import ObjectStore
from tests.sdk_support import Cli, new_namespace, write_random_file
from tests.support import ServerHandle, eventually, read_metrics

SIZE = 1_000_000_000 + 12_345  # at least 1 GB, so the server picks 128 MiB parts: 8 of them


def saved_upload(cache: Path) -> str:
    """The upload name the running CLI saved in its resume state, or ""."""
    for state in (cache / "uploads").glob("*.json"):
        try:
            return str(json.loads(state.read_text()).get("upload", ""))
        except ValueError:
            pass  # caught between write and rename: it is written atomically, so read again
    return ""


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_killed_cli_upload_resumes_without_resending_committed_parts(
        server_file: ServerHandle, stores: dict[str, ObjectStore], tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    sha = write_random_file(source, SIZE)
    cli = Cli(server_file.address, new_namespace(), tmp_path / "cache")
    first = cli.popen("upload", str(source), "--dataset", "big", "--json")
    with cli.client() as client:
        deadline = time.monotonic() + 300
        name = ""
        while not name or len(client.get_upload(name).parts) < 2:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the upload never got two parts committed"
            await asyncio.sleep(0.05)
            name = name or saved_upload(cli.cache_dir)
        first.kill()
        first.communicate()
        # A part the dead client had sent whole may still be landing: the server's stream ends once it has.
        async def stream_over() -> bool:
            text = await asyncio.to_thread(read_metrics, server_file.metrics_port)
            return "quarry_upload_active_streams 0.0" in text.splitlines()

        await eventually(stream_over, "the killed client's stream ended on the server", timeout=60)
        parts = client.get_upload(name).parts
        committed = sum(p.size_bytes for p in parts)
        assert client.get_upload(name).part_size_bytes == 128 << 20
    assert 0 < committed < SIZE and len(parts) < 8

    result = cli.json("upload", str(source), "--dataset", "big", timeout=600)
    assert result["upload"] == name and result["resumed"]
    assert result["state"] == "UPLOAD_STATE_STAGED"
    assert result["bytes_skipped"] == committed  # every committed part was skipped ...
    assert result["bytes_sent"] == SIZE - committed  # ... and nothing else was sent twice
    digest = hashlib.sha256()
    key = f"staging/{cli.namespace}/{result['uid']}"
    async for chunk in stores["file"].read(key):
        digest.update(chunk)
    assert digest.hexdigest() == sha  # byte-identical
    assert not list((cli.cache_dir / "uploads").glob("*.json"))  # resume state is gone once it is staged
    await stores["file"].delete(key)
