"""In-process services whose object store counts every call and byte, and versions published through the real
pipeline: what the clone, undelete and inline-file tests share."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from server.composition import open_services
from server.connections import open_connections
from server.domain.caller import Caller
from server.domain.services import Services
from server.domain.upload_stream import Chunk, Finish, StreamMessage
from server.domain.uploads import NewUpload
from server.model.objects import ObjectStore
from server.model.versions import Version, VersionState
from tests.conftest import settings_of
from tests.samples import Sample

BYTES_IN = {"put", "upload_part"}


@dataclass
class CountingStore:
    """Every call made to the store it wraps, and the bytes read from or written to it."""

    store: ObjectStore
    calls: list[str] = field(default_factory=list)
    bytes_read: int = 0
    bytes_written: int = 0

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.store, name)
        if name.startswith("_") or not callable(target):
            return target
        if name == "read":
            return self._read
        if name == "put":
            return self._put

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            if name == "upload_part":
                self.bytes_written += len(args[4])
            return target(*args, **kwargs)

        return call

    async def _read(self, *args: Any, **kwargs: Any) -> AsyncIterator[bytes]:
        self.calls.append("read")
        async for chunk in self.store.read(*args, **kwargs):
            self.bytes_read += len(chunk)
            yield chunk

    async def _put(self, key: str, chunks: Any) -> Any:
        self.calls.append("put")

        async def counted() -> AsyncIterator[bytes]:
            async for chunk in chunks:
                self.bytes_written += len(chunk)
                yield chunk

        return await self.store.put(key, counted())

    def reset(self) -> None:
        self.calls.clear()
        self.bytes_read = self.bytes_written = 0


@contextlib.asynccontextmanager
async def counted_services(env: dict[str, str], **overrides: str) -> AsyncIterator[tuple[Services, CountingStore]]:
    """Services built from a server's environment (plus overrides) over a counting store."""
    settings = settings_of(dict(env, **overrides))
    async with open_connections(settings) as deps:
        counting = CountingStore(deps.store)
        async with open_services(dataclasses.replace(deps, store=counting)) as services:  # type: ignore[arg-type]
            yield services, counting


async def messages(data: bytes) -> AsyncIterator[StreamMessage]:
    for start in range(0, len(data), 1 << 20):
        yield Chunk(data[start:start + (1 << 20)])
    yield Finish()


async def nothing(_: object) -> None:
    return None


async def publish(services: Services, caller: Caller, dataset: str, samples: Iterable[Sample],
                  delete_paths: Iterable[str] = ()) -> Version:
    """Upload, validate, commit and promote files as the worker would, in this process; the READY version."""
    uploads = []
    for sample in samples:
        upload, _ = await services.uploads.create(caller, "", NewUpload(dataset, sample.path, len(sample.data)))
        await services.upload_stream.write(caller, upload.name, 0, messages(sample.data), nothing)
        await services.pipeline.validate_upload(upload.id)
        uploads.append(upload.name)
    committed = await services.versions.commit(caller, f"namespaces/{caller.namespace}/datasets/{dataset}", "",
                                               uploads, list(delete_paths), "test", "")
    await services.pipeline.promote_version(committed.id)
    version = await services.versions.get(
        caller, f"namespaces/{caller.namespace}/datasets/{dataset}/versions/{committed.id}", with_files=True)
    assert version.state == VersionState.READY, version.failure
    return version
