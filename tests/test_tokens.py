"""Tokens: the first operator token, issuing (the secret once, only its hash stored), what an admin may issue
and see, bad requests, expiry, and revocation that reaches every replica within a second."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from pathlib import Path

import asyncpg
import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from grpc import aio
from quarry.v1 import namespace_service_pb2 as npb
from quarry.v1 import token_pb2
from quarry.v1 import token_service_pb2 as tpb

from server.domain.tokens import bootstrap as bootstrap_token
from server.model.errors import FailedPrecondition
from tests.conftest import create_database
from tests.inprocess import in_process
from tests.support import (
    Api,
    ServerHandle,
    bearer,
    bootstrap,
    create_namespace,
    error_info,
    field_violations,
    issue_token,
    open_api,
    server_operator,
    start_server,
)

pytestmark = pytest.mark.asyncio


def grant(namespace: str, role: int) -> token_pb2.Grant:
    return token_pb2.Grant(namespace=f"namespaces/{namespace}", role=role)


async def fails(call: object, code: grpc.StatusCode, reason: str) -> aio.AioRpcError:
    with pytest.raises(aio.AioRpcError) as raised:
        await call  # type: ignore[misc]
    assert (raised.value.code(), error_info(raised.value)[0]) == (code, reason), raised.value.details()
    return raised.value


async def test_bootstrap_issues_one_operator_token_then_refuses(postgres: object,
                                                                stack_envs: dict[str, dict[str, str]]) -> None:
    env = dict(stack_envs["file"], QUARRY_DATABASE_URL=await create_database(postgres, "bootstrap"))  # type: ignore
    first = await asyncio.to_thread(bootstrap, env)
    assert first.returncode == 0, first.stderr
    token = first.stdout.strip()
    assert token.startswith("qk_") and len(token.split("_", 2)[2]) >= 43
    assert "shown once" in first.stderr and token not in first.stderr
    again = await asyncio.to_thread(bootstrap, env)
    assert again.returncode == 1 and again.stdout == ""
    assert again.stderr.strip().splitlines()[-1].startswith("quarry: an operator token exists already")
    async with in_process(env) as services:
        with pytest.raises(FailedPrecondition) as refused:
            await bootstrap_token(services.db, "second", "default")
    assert refused.value.reason == "ALREADY_BOOTSTRAPPED"
    connection = await asyncpg.connect(env["QUARRY_DATABASE_URL"])
    try:
        rows = await connection.fetch("SELECT * FROM tokens")
        assert len(rows) == 1 and rows[0]["operator"]
        # Only the hash of the secret is kept: the secret is nowhere in the row.
        secret = token.split("_", 2)[2]
        assert all(secret not in str(value) for value in rows[0].values())
        assert rows[0]["secret_sha256"] == hashlib.sha256(secret.encode()).hexdigest()
        assert await connection.fetchval("SELECT count(*) FROM namespaces WHERE name = 'default'") == 1
    finally:
        await connection.close()


async def test_a_token_is_shown_once_and_works_at_once(api: Api, quarry: ServerHandle) -> None:
    created = await api.tokens.CreateToken(tpb.CreateTokenRequest(token=token_pb2.Token(
        principal="ingest", grants=[grant(api.namespace, token_pb2.ROLE_WRITER)]), request_id="issue-1"))
    assert created.secret.startswith(f"qk_{created.token.name.removeprefix('tokens/')}_")
    assert created.token.principal == "ingest" and created.token.creator == "test"
    assert list(created.token.grants) == [grant(api.namespace, token_pb2.ROLE_WRITER)]
    # A replay returns the same token, without the secret (shown once).
    again = await api.tokens.CreateToken(tpb.CreateTokenRequest(token=token_pb2.Token(
        principal="ingest", grants=[grant(api.namespace, token_pb2.ROLE_WRITER)]), request_id="issue-1"))
    assert again.token.name == created.token.name and again.secret == ""
    listed = await api.tokens.ListTokens(tpb.ListTokensRequest(parent=api.parent))
    assert created.token.name in [t.name for t in listed.tokens]
    assert created.secret not in str(listed)
    writer = open_api(quarry.address, api.namespace, token=created.secret)
    try:
        await writer.namespaces.GetNamespace(npb.GetNamespaceRequest(name=api.parent))
        await fails(writer.tokens.ListTokens(tpb.ListTokensRequest(parent=api.parent)),
                    grpc.StatusCode.PERMISSION_DENIED, "ROLE_REQUIRED")
    finally:
        await writer.channel.close()


async def test_an_admin_issues_only_within_what_it_administers(api: Api, quarry: ServerHandle,
                                                               pools: dict[str, asyncpg.Pool]) -> None:
    operator = server_operator(quarry.address)
    elsewhere = f"t-{uuid.uuid4().hex[:12]}"
    create_namespace(quarry.address, operator, elsewhere)
    before = await pools[quarry.storage_kind].fetchval("SELECT count(*) FROM tokens")
    cases = [
        (token_pb2.Token(principal="x", grants=[grant(elsewhere, token_pb2.ROLE_READER)]),
         grpc.StatusCode.PERMISSION_DENIED, "NAMESPACE_NOT_GRANTED", None),
        (token_pb2.Token(principal="x", grants=[grant(api.namespace, token_pb2.ROLE_READER),
                                                grant(elsewhere, token_pb2.ROLE_READER)]),
         grpc.StatusCode.PERMISSION_DENIED, "NAMESPACE_NOT_GRANTED", None),
        (token_pb2.Token(principal="x", operator=True), grpc.StatusCode.PERMISSION_DENIED, "ROLE_REQUIRED", None),
        (token_pb2.Token(principal="x"), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_GRANTS", "token.grants"),
        (token_pb2.Token(principal="", grants=[grant(api.namespace, token_pb2.ROLE_READER)]),
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PRINCIPAL", "token.principal"),
        (token_pb2.Token(principal="a b", grants=[grant(api.namespace, token_pb2.ROLE_READER)]),
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PRINCIPAL", "token.principal"),
        (token_pb2.Token(principal="x", grants=[grant(api.namespace, token_pb2.ROLE_UNSPECIFIED)]),
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_GRANTS", "token.grants[0].role"),
        (token_pb2.Token(principal="x", grants=[token_pb2.Grant(namespace=api.namespace, role=1)]),
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_GRANTS", "token.grants[0].namespace"),
        (token_pb2.Token(principal="x", grants=[grant(api.namespace, 1), grant(api.namespace, 2)]),
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_GRANTS", "token.grants[1].namespace"),
        (token_pb2.Token(principal="x", grants=[grant(api.namespace, 1)], ttl=duration_pb2.Duration(seconds=-5)),
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_EXPIRY", "token.ttl"),
        (token_pb2.Token(principal="x", grants=[grant(api.namespace, 1)],
                         expire_time=timestamp_pb2.Timestamp(seconds=1)),
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_EXPIRY", "token.expire_time"),
        (token_pb2.Token(principal="x", grants=[grant(api.namespace, 1)],
                         expire_time=timestamp_pb2.Timestamp(seconds=2**62)),
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_EXPIRY", "token.expire_time"),
    ]
    for token, code, reason, field in cases:
        error = await fails(api.tokens.CreateToken(tpb.CreateTokenRequest(token=token)), code, reason)
        if field is not None:
            assert field_violations(error) == [field], token
    # The operator may, and a grant on a namespace nobody created is NOT_FOUND (to an operator, who may know).
    operator_api = open_api(quarry.address, api.namespace, token=operator)
    try:
        await fails(operator_api.tokens.CreateToken(tpb.CreateTokenRequest(token=token_pb2.Token(
            principal="x", grants=[grant("never-made", 1)]))), grpc.StatusCode.NOT_FOUND, "NAMESPACE_NOT_FOUND")
    finally:
        await operator_api.channel.close()
    assert await pools[quarry.storage_kind].fetchval("SELECT count(*) FROM tokens") == before


async def test_an_admin_sees_and_revokes_only_tokens_it_manages(api: Api, quarry: ServerHandle) -> None:
    operator = server_operator(quarry.address)
    elsewhere = f"t-{uuid.uuid4().hex[:12]}"
    create_namespace(quarry.address, operator, elsewhere)
    both = issue_token(quarry.address, operator, {api.namespace: "reader", elsewhere: "reader"}, principal="both")
    mine = issue_token(quarry.address, operator, {api.namespace: "reader"}, principal="mine")
    listed = {t.principal for t in (await api.tokens.ListTokens(tpb.ListTokensRequest(parent=api.parent))).tokens}
    assert "mine" in listed and "both" not in listed
    both_name = f"tokens/{both.split('_')[1]}"
    await fails(api.tokens.RevokeToken(tpb.RevokeTokenRequest(name=both_name)), grpc.StatusCode.NOT_FOUND,
                "TOKEN_NOT_FOUND")
    await fails(api.tokens.RevokeToken(tpb.RevokeTokenRequest(name="tokens/0000000000000000")),
                grpc.StatusCode.NOT_FOUND, "TOKEN_NOT_FOUND")
    for bad in ("", "tokens/", "tokens/XYZ", "namespaces/x"):
        error = await fails(api.tokens.RevokeToken(tpb.RevokeTokenRequest(name=bad)),
                            grpc.StatusCode.INVALID_ARGUMENT, "INVALID_NAME")
        assert field_violations(error) == ["name"]
    await fails(api.tokens.ListTokens(tpb.ListTokensRequest(parent="namespaces/-")),
                grpc.StatusCode.PERMISSION_DENIED, "ROLE_REQUIRED")
    mine_name = f"tokens/{mine.split('_')[1]}"
    revoked = (await api.tokens.RevokeToken(tpb.RevokeTokenRequest(name=mine_name))).token
    assert revoked.HasField("revoke_time")
    again = (await api.tokens.RevokeToken(tpb.RevokeTokenRequest(name=mine_name))).token
    assert again.revoke_time == revoked.revoke_time  # revoking again changes nothing
    assert mine_name not in [t.name for t in (await api.tokens.ListTokens(tpb.ListTokensRequest())).tokens]
    shown = await api.tokens.ListTokens(tpb.ListTokensRequest(show_revoked=True))
    assert mine_name in [t.name for t in shown.tokens]


async def test_an_expired_token_is_refused(api: Api, quarry: ServerHandle) -> None:
    created = await api.tokens.CreateToken(tpb.CreateTokenRequest(token=token_pb2.Token(
        principal="brief", grants=[grant(api.namespace, 1)], ttl=duration_pb2.Duration(seconds=1))))
    assert created.token.HasField("expire_time")
    brief = open_api(quarry.address, api.namespace, token=created.secret)
    try:
        await brief.namespaces.GetNamespace(npb.GetNamespaceRequest(name=api.parent))
        deadline = time.monotonic() + 10
        while True:  # until the server's clock passes expire_time
            try:
                await brief.namespaces.GetNamespace(npb.GetNamespaceRequest(name=api.parent))
            except aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.UNAUTHENTICATED
                assert error_info(error) == ("TOKEN_EXPIRED", {"token": created.token.name})
                assert created.secret not in (error.details() or "")
                break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
    finally:
        await brief.channel.close()


@pytest.mark.slow
@pytest.mark.acceptance
async def test_revocation_reaches_every_replica_within_a_second(
        server_file: ServerHandle, stack_envs: dict[str, dict[str, str]], tmp_path: Path,
        pools: dict[str, asyncpg.Pool]) -> None:
    # Two replicas on one database; both have the token cached (it just worked on each), then one revokes it.
    api = open_api(server_file.address)
    await api.channel.close()
    second = await asyncio.to_thread(start_server, stack_envs["file"], tmp_path, "replica", "file")
    replicas = [server_file, second]
    holder = issue_token(replicas[0].address, server_operator(replicas[0].address), {api.namespace: "reader"},
                         principal="holder")
    clients = [open_api(r.address, api.namespace, token=holder) for r in replicas]
    try:
        request = npb.GetNamespaceRequest(name=api.parent)
        for client in clients:
            for _ in range(3):
                await client.namespaces.GetNamespace(request)
        operator = open_api(replicas[0].address, api.namespace, token=server_operator(replicas[0].address))
        name = f"tokens/{holder.split('_')[1]}"
        await operator.tokens.RevokeToken(tpb.RevokeTokenRequest(name=name))
        revoked_at = time.monotonic()
        await operator.channel.close()
        refused_after = []
        for client in clients:
            while True:
                try:
                    await client.namespaces.GetNamespace(request)
                except aio.AioRpcError as error:
                    assert error_info(error)[0] == "TOKEN_REVOKED"
                    refused_after.append(time.monotonic() - revoked_at)
                    break
                assert time.monotonic() - revoked_at < 1.0, "a replica still accepts a token revoked a second ago"
                await asyncio.sleep(0.02)
        assert max(refused_after) < 1.0
    finally:
        for client in clients:
            await client.channel.close()
        await asyncio.to_thread(second.process.stop)
    # A replica records a token's last use (at the latest when it stops, as the second did).
    used = await pools["file"].fetchval("SELECT last_use_time FROM tokens WHERE id = $1", holder.split("_")[1])
    assert used is not None


async def test_malformed_authorization_values(api: Api, quarry: ServerHandle) -> None:
    token = api.token
    secret_id = token.split("_")[1]
    cases = {
        "": "TOKEN_MISSING", f"Basic {token}": "TOKEN_INVALID", "Bearer": "TOKEN_INVALID",
        f"Bearer {token}x!": "TOKEN_INVALID", f"Bearer {token[:-1]}": "TOKEN_INVALID",
        f"Bearer qk_{secret_id}_{'B' * 43}": "TOKEN_INVALID", f"bearer {token}": "",  # the scheme is case-blind
        f"Bearer  {token} ": "",
    }
    async with aio.insecure_channel(quarry.address) as channel:
        stub = api.namespaces.__class__(channel)
        for value, reason in cases.items():
            metadata = (("authorization", value),) if value else ()
            try:
                await stub.GetNamespace(npb.GetNamespaceRequest(name=api.parent), metadata=metadata)
                assert reason == "", value
            except aio.AioRpcError as error:
                assert (error.code(), error_info(error)[0]) == (grpc.StatusCode.UNAUTHENTICATED, reason), value
                assert token.split("_", 2)[2] not in (error.details() or "")
        # The secret is checked even for a cached token: the right id with a wrong secret stays refused.
        await stub.GetNamespace(npb.GetNamespaceRequest(name=api.parent), metadata=bearer(token))
        with pytest.raises(aio.AioRpcError) as wrong:
            await stub.GetNamespace(npb.GetNamespaceRequest(name=api.parent),
                                    metadata=bearer(f"qk_{secret_id}_{'C' * 43}"))
        assert error_info(wrong.value)[0] == "TOKEN_INVALID"
