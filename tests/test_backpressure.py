"""A slow store slows the client down: the server reads no further than one part ahead of the store.

The store is made slow by a gate in front of the real local store (a fault we cannot cause for real on
demand); the server runs in this process on a real socket so the gate can be opened from the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator

import pytest
from quarry.v1 import upload_pb2
from quarry.v1 import upload_service_pb2 as pb

from server.api.health import HealthReporter
from server.app import QUARRY_SERVICES, build_grpc_server
from server.composition import open_services
from server.connections import open_connections
from server.domain.caller import Caller
from server.domain.tokens import NewToken
from server.listen_ports import free_port
from server.model.identity import Grant, Role
from server.model.namespaces import Quota
from server.model.objects import ObjectStore, PartWriter
from tests.conftest import settings_of
from tests.support import open_api
from tests.uploading import MiB, create_request


class _GatedWriter(PartWriter):
    def __init__(self, inner: PartWriter, gate: asyncio.Event, reached: asyncio.Event) -> None:
        self._inner = inner
        self._gate = gate
        self._reached = reached

    @property  # type: ignore[override]
    def size(self) -> int:
        return self._inner.size

    async def write(self, data: memoryview) -> None:
        self._reached.set()
        await self._gate.wait()
        await self._inner.write(data)

    async def commit(self) -> str:
        return await self._inner.commit()

    async def discard(self) -> None:
        await self._inner.discard()


class _GatedStore:
    """The real store, except that part writes wait for a gate (`reached` is set once one does)."""

    def __init__(self, inner: ObjectStore, gate: asyncio.Event) -> None:
        self._inner = inner
        self._gate = gate
        self.reached = asyncio.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def open_part(self, *args: object, **kwargs: object) -> PartWriter:
        return _GatedWriter(self._inner.open_part(*args, **kwargs), self._gate,  # type: ignore[arg-type]
                            self.reached)


@pytest.mark.slow
async def test_a_blocked_store_stops_the_client(stack_envs: dict[str, dict[str, str]]) -> None:
    settings = settings_of(dict(stack_envs["file"], QUARRY_GRPC_ADDRESS=f"127.0.0.1:{free_port()}"))
    gate = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        deps = await stack.enter_async_context(open_connections(settings))
        gated = _GatedStore(deps.store, gate)
        deps.store = gated  # type: ignore[assignment]
        services = await stack.enter_async_context(open_services(deps))
        server = build_grpc_server(settings, deps, services, HealthReporter(deps.probe, QUARRY_SERVICES, 60))
        server.add_insecure_port(settings.grpc_address)
        await server.start()
        stack.push_async_callback(server.stop, 0)
        namespace = f"t-{uuid.uuid4().hex[:12]}"
        await services.namespaces.create(Caller(namespace), namespace, Quota(), None)
        issued = await services.tokens.create(Caller(namespace), NewToken("test", (Grant(namespace, Role.ADMIN),)))
        api = open_api(settings.grpc_address, namespace, token=issued.secret)
        stack.push_async_callback(api.channel.close)

        size = 200 * MiB
        sent = 0
        block = os.urandom(MiB)

        async def requests() -> AsyncIterator[pb.UploadRequest]:
            nonlocal sent
            yield pb.UploadRequest(header=pb.UploadHeader(create=create_request("slow", "s.bin", size)))
            while sent < size:
                sent += len(block)
                yield pb.UploadRequest(chunk=pb.UploadChunk(data=block))
            yield pb.UploadRequest(finish=pb.UploadFinish())

        call = asyncio.ensure_future(api.uploads.Upload(requests()))
        await asyncio.wait_for(gated.reached.wait(), 30)  # the server's first part write waits at the gate
        # What is under test is that nothing more happens: give a client that is not held back time to run ahead
        # (on loopback it would send the whole 200 MiB in well under a second).
        await asyncio.sleep(1)
        # The store has taken nothing: the client got no further than the transport's window plus a chunk.
        assert sent < 48 * MiB, f"the client sent {sent / MiB:.0f} MiB into a blocked server"
        held = sent
        await asyncio.sleep(1)  # again: nothing may move while the gate is shut
        assert sent == held and not call.done()
        gate.set()
        response = await asyncio.wait_for(call, 60)
        assert response.upload.state == upload_pb2.UPLOAD_STATE_STAGED
        assert response.upload.size_bytes == size
