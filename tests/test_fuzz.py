"""Fuzz: 1,000 generated bad requests across every RPC of the contract, with a valid token (admin of the
namespace), against a real server. None may end INTERNAL or UNKNOWN, the server must stay up, and a call
that failed must leave nothing behind: no row, no staged object, no open multipart write."""

from __future__ import annotations

import asyncio
import string
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import asyncpg
import grpc
import pytest
from google.protobuf import descriptor, message_factory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from quarry.v1 import dataset_service_pb2_grpc, upload_service_pb2_grpc

from server.model.objects import ObjectStore
from tests.access_matrix import SERVICES
from tests.support import (
    ServerHandle,
    bearer,
    create_namespace,
    issue_token,
    server_operator,
    wait_serving,
    workers_idle,
)

EXAMPLES = 1000
F = descriptor.FieldDescriptor
NAMESPACE = f"fz-{uuid.uuid4().hex[:10]}"

CONTRACT = {f"/{service.full_name}/{method.name}": method
            for module in SERVICES for service in module.DESCRIPTOR.services_by_name.values()
            for method in service.methods}

# Strings that are almost right, or right in the wrong place: resource names of this namespace and others,
# paths with traversal and control characters, filters, page tokens, huge and odd text.
NEAR_MISSES = [
    "", " ", "-", "*", "latest", "namespaces", f"namespaces/{NAMESPACE}", "namespaces/-", "namespaces/default",
    f"namespaces/{NAMESPACE}/datasets/ds", f"namespaces/{NAMESPACE}/datasets/ds/versions/1",
    f"namespaces/{NAMESPACE}/datasets/ds/versions/latest", f"namespaces/{NAMESPACE}/datasets/ds/versions/0",
    f"namespaces/{NAMESPACE}/datasets/ds/versions/99999999999", f"namespaces/{NAMESPACE}/uploads/not-a-uuid",
    f"namespaces/{NAMESPACE}/uploads/{uuid.uuid4()}", f"namespaces/{NAMESPACE}/datasets/DS", "namespaces//datasets/x",
    "tokens/", "tokens/0123456789abcdef", "tokens/xyz", "auditEvents/1", "../../etc/passwd", "a/../b", "/abs",
    "a\x00b", "a\\b", "ü" * 70, "x" * 5000, "state = OPEN", "state = ", 'name = "unterminated', 'name = "\\q"',
    "event_time >= \"yesterday\"", "event_time >= \"2025-01-01T00:00:00\"", 'principal = "x" AND method = "y"',
    "labels.k = v", "name desc", "update_time desc asc", "quota", "quota.max_bytes", "description", "*", "rules",
    "eyJwIjpbXSwiciI6IiJ9", "%%%", "namespaces/a b",
]


def texts(near: list[str], real: list[str]) -> st.SearchStrategy[str]:
    """Mostly names of things that exist and near misses (which reach past the first checks), sometimes anything."""
    close, exact = st.sampled_from(near), st.sampled_from(real)
    return st.one_of(exact, exact, close, close, st.text(max_size=40),
                     st.text(alphabet=string.ascii_lowercase + string.digits + "-_./", max_size=80))


def _scalar(field: descriptor.FieldDescriptor, text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == F.TYPE_STRING:
        return text
    if kind == F.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == F.TYPE_BOOL:
        return st.booleans()
    if kind in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=64 if kind == F.TYPE_DOUBLE else 32)
    if kind == F.TYPE_ENUM:
        return st.integers(-3, 12)
    if kind in (F.TYPE_INT32, F.TYPE_SINT32, F.TYPE_SFIXED32):
        return st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([0, -1, 1, 2**31 - 1]))
    if kind in (F.TYPE_UINT32, F.TYPE_FIXED32):
        return st.integers(0, 2**32 - 1)
    if kind in (F.TYPE_UINT64, F.TYPE_FIXED64):
        return st.integers(0, 2**64 - 1)
    return st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([0, -1, 1, 2**63 - 1, -(2**63)]))


def messages(message: descriptor.Descriptor, text: st.SearchStrategy[str], depth: int = 0) -> st.SearchStrategy[Any]:
    """Messages of type `message` with any subset of fields set to generated values (one member per oneof)."""
    cls = message_factory.GetMessageClass(message)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in message.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            if depth < 2:
                fields[field.name] = st.dictionaries(text, text, max_size=3)
            continue
        if field.message_type is not None:
            if depth >= 2:
                continue
            value = messages(field.message_type, text, depth + 1)
        else:
            value = _scalar(field, text)
        repeated = field.is_repeated
        fields[field.name] = st.lists(value, max_size=3) if repeated else value
    oneofs = {f.name: o.name for o in message.oneofs for f in o.fields}

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        chosen = draw(st.lists(st.sampled_from(sorted(fields)), unique=True)) if fields else []
        taken: set[str] = set()
        values = {}
        for name in chosen:
            if name in oneofs and oneofs[name] in taken:
                continue
            taken.add(oneofs.get(name, name))
            values[name] = draw(fields[name])
        return cls(**values)

    return build()


def calls(near: list[str], real: list[str]) -> st.SearchStrategy[tuple[str, Any]]:
    """(method name, its request: a message, or a list of them for a client stream)."""
    text = texts(near, real)

    def requests_for(name: str) -> st.SearchStrategy[Any]:
        method = CONTRACT[name]
        single = messages(method.input_type, text)
        return st.lists(single, min_size=0, max_size=4) if method.client_streaming else single

    return st.sampled_from(sorted(CONTRACT)).flatmap(lambda name: st.tuples(st.just(name), requests_for(name)))


class Looker:
    """Rows and staged objects of the namespace, read from a loop of its own (hypothesis runs synchronously)."""

    def __init__(self, database_url: str, store_factory: Callable[[], Any]) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._connection: asyncpg.Connection = self._run(asyncpg.connect(database_url))
        self._store: ObjectStore = self._run(store_factory())

    def _run(self, coroutine: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(60)

    async def _snapshot(self) -> tuple[Any, ...]:
        row = await self._connection.fetchrow(
            """SELECT (SELECT string_agg(d.name || d.state || d.revision::text, ',' ORDER BY d.id) FROM datasets d
                        JOIN namespaces n ON n.id = d.namespace_id WHERE n.name = $1),
                      (SELECT string_agg(u.id::text || u.state || u.attempts::text, ',' ORDER BY u.id) FROM uploads u
                        JOIN namespaces n ON n.id = u.namespace_id WHERE n.name = $1),
                      (SELECT count(*) FROM upload_parts p JOIN uploads u ON u.id = p.upload_id
                        JOIN namespaces n ON n.id = u.namespace_id WHERE n.name = $1),
                      (SELECT count(*) FROM versions v JOIN datasets d ON d.id = v.dataset_id
                        JOIN namespaces n ON n.id = d.namespace_id WHERE n.name = $1),
                      (SELECT count(*) FROM tokens), (SELECT count(*) FROM tokens WHERE revoke_time IS NOT NULL),
                      (SELECT string_agg(name, ',' ORDER BY name) FROM namespaces),
                      (SELECT revision FROM namespaces WHERE name = $1)""", NAMESPACE)
        staged = sorted([o.key async for o in self._store.list_objects(f"staging/{NAMESPACE}/")])
        multipart = sorted([m.upload_id async for m in self._store.list_multipart(f"staging/{NAMESPACE}/")])
        return (*row, tuple(staged), tuple(multipart))

    def snapshot(self) -> tuple[Any, ...]:
        return self._run(self._snapshot())  # type: ignore[no-any-return]

    def settle(self, timeout: float = 60) -> None:
        """Wait until the workers have nothing left to do in the namespace. An earlier example that succeeded (an
        upload finished, a commit, a registration) goes on in the background, and what it changes must not pass
        for the leftover of a later, refused call."""
        self._run(workers_idle(self._connection, NAMESPACE, timeout))

    def close(self) -> None:
        self._run(self._connection.close())
        self._run(self._store.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def looker(server_file: ServerHandle) -> Iterator[Looker]:
    from server.connections import open_configured_store
    from tests.conftest import settings_of

    seen = Looker(server_file.env["QUARRY_DATABASE_URL"],
                  lambda: open_configured_store(settings_of(server_file.env)))
    yield seen
    seen.close()


def call(channel: grpc.Channel, name: str, request: Any,
         metadata: tuple[tuple[str, str], ...]) -> tuple[grpc.StatusCode, str]:
    """The status code and message a call ended with."""
    method = CONTRACT[name]
    response = message_factory.GetMessageClass(method.output_type)
    kwargs = {"request_serializer": lambda m: m.SerializeToString(), "response_deserializer": response.FromString}
    try:
        if method.client_streaming:
            channel.stream_unary(name, **kwargs)(iter(request), metadata=metadata, timeout=20)
        elif method.server_streaming:
            stream = channel.unary_stream(name, **kwargs)(request, metadata=metadata, timeout=5)
            for _ in stream:
                break
            stream.cancel()
        else:
            channel.unary_unary(name, **kwargs)(request, metadata=metadata, timeout=20)
    except grpc.RpcError as error:
        code, details = error.code(), error.details() or ""  # type: ignore[attr-defined]
        # An OPEN upload watched until the deadline is a stream that was admitted and is still running.
        if code == grpc.StatusCode.DEADLINE_EXCEEDED and method.server_streaming:
            return grpc.StatusCode.OK, ""
        return code, details
    return grpc.StatusCode.OK, ""


def existing_resources(address: str, token: str) -> list[str]:
    """A dataset with a READY-less history, an OPEN upload and a cancelled one, so fuzzed names also hit things
    that exist."""
    from quarry.v1 import dataset_service_pb2 as dpb
    from quarry.v1 import upload_pb2
    from quarry.v1 import upload_service_pb2 as upb

    from tests.support import token_channel

    with token_channel(address, token) as channel:
        datasets = dataset_service_pb2_grpc.DatasetServiceStub(channel)
        uploads = upload_service_pb2_grpc.UploadServiceStub(channel)
        dataset = datasets.CreateDataset(dpb.CreateDatasetRequest(parent=f"namespaces/{NAMESPACE}", dataset_id="ds"),
                                         timeout=30).dataset
        opened = [uploads.CreateUpload(upb.CreateUploadRequest(
            parent=f"namespaces/{NAMESPACE}", upload=upload_pb2.Upload(dataset="ds", path=f"{i}.csv")),
            timeout=30).upload for i in range(2)]
        uploads.CancelUpload(upb.CancelUploadRequest(name=opened[1].name), timeout=30)
    return [dataset.name, opened[0].name, opened[1].name, "ds", "0.csv", f"{dataset.name}/versions/latest",
            f"namespaces/{NAMESPACE}"]


def test_generated_bad_requests_never_crash_or_leave_anything(server_file: ServerHandle, worker_file: object,
                                                             looker: Looker) -> None:
    # A worker runs, so that what a successful example starts finishes before the next one (Looker.settle), the
    # same whether or not an earlier test of this process started the session's worker.
    address = server_file.address
    create_namespace(address, server_operator(address), NAMESPACE)
    token = issue_token(address, server_operator(address), {NAMESPACE: "admin"}, principal="fuzzer")
    metadata = bearer(token)
    real = existing_resources(address, token)
    seen: dict[str, set[str]] = {}
    failures: list[str] = []
    with grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(calls(NEAR_MISSES, real))
        def one(case: tuple[str, Any]) -> None:
            name, request = case
            looker.settle()
            before = looker.snapshot()
            code, details = call(channel, name, request, metadata)
            seen.setdefault(name, set()).add(code.name)
            # INTERNAL, UNKNOWN or UNAVAILABLE mean the server broke; a status too big for the client's metadata
            # limit reaches it as a RESOURCE_EXHAUSTED of its own instead of the server's answer.
            if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE) or \
                    "metadata size exceeds" in details:
                failures.append(f"{name} {code.name} {details[:200]}: {str(request)[:300]}")
            elif code != grpc.StatusCode.OK and (after := looker.snapshot()) != before:
                changed = [f"{b!r} -> {a!r}" for b, a in zip(before, after, strict=True) if a != b]
                failures.append(f"{name} {code.name} left something behind ({'; '.join(changed)[:300]}): {request}")

        one()
    assert failures == [], "\n".join(failures[:10])
    assert set(seen) == set(CONTRACT)  # every RPC was fuzzed
    wait_serving(address, timeout=5)  # and the server is still up
    assert "unexpected error in handler" not in server_file.process.log()
