"""The SDK's side of identity: where the token comes from, TLS settings, Unauthenticated errors, the token,
namespace and audit calls, and a rate limit's RetryInfo honoured."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest
import quarry
from quarry._config import Config

from tests.sdk_support import provision
from tests.support import ServerHandle, issue_token, server_operator

TOKEN = "qk_0123456789abcdef_" + "a" * 43
OTHER = "qk_fedcba9876543210_" + "b" * 43


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No QUARRY_* client variables; the credentials file is this test's own (not yet written)."""
    for name in ("QUARRY_ADDRESS", "QUARRY_NAMESPACE", "QUARRY_TOKEN", "QUARRY_CA_FILE", "QUARRY_CERT_FILE",
                 "QUARRY_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "credentials"
    monkeypatch.setenv("QUARRY_CREDENTIALS", str(path))
    return path


def test_the_token_comes_from_the_argument_then_the_environment_then_the_file(
        no_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Config.resolve().token is None
    no_env.write_text(f'token = "{TOKEN}"\nnamespace = "team-a"\n')
    from_file = Config.resolve()
    assert (from_file.token, from_file.namespace) == (TOKEN, "team-a")
    monkeypatch.setenv("QUARRY_TOKEN", OTHER)
    from_env = Config.resolve()
    assert (from_env.token, from_env.namespace) == (OTHER, "default")  # the file's namespace goes with its token
    assert Config.resolve(token=TOKEN).token == TOKEN
    assert TOKEN not in repr(Config.resolve(token=TOKEN))


def test_a_credentials_file_gives_its_token_only_to_its_server(no_env: Path) -> None:
    no_env.write_text(f'token = "{TOKEN}"\naddress = "127.0.0.1:7000"\n')
    mine = Config.resolve()
    assert (mine.address, mine.token) == ("127.0.0.1:7000", TOKEN)  # its server is the default address, too
    assert Config.resolve("127.0.0.1:7000").token == TOKEN
    assert Config.resolve("evil.example:7000").token is None


@pytest.mark.parametrize("content, words", [
    ("token = 'not-a-token'\n", "does not hold a Quarry token"),
    ("this is not toml\n", "is not TOML"),
    ("address = 'x:1'\n", "needs `token"),
])
def test_unusable_credentials_are_a_usage_error_naming_the_file(no_env: Path, content: str, words: str) -> None:
    no_env.write_text(content)
    with pytest.raises(quarry.UsageError, match=words) as refused:
        Config.resolve()
    assert str(no_env) in str(refused.value)


def test_a_malformed_token_is_refused_before_any_call_without_echoing_it(
        no_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUARRY_TOKEN", "Bearer " + TOKEN)
    with pytest.raises(quarry.UsageError, match="QUARRY_TOKEN does not hold a Quarry token") as refused:
        quarry.Client()
    assert "a" * 43 not in str(refused.value)


def test_tls_settings(no_env: Path, tmp_path: Path) -> None:
    pem = tmp_path / "ca.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    assert Config.resolve("grpcs://host:443").tls
    assert not Config.resolve("grpc://host:80").tls and not Config.resolve("host:80").tls
    assert Config.resolve("host:443", tls=True).target == "grpcs://host:443"
    assert Config.resolve("host:443", ca_file=pem).tls  # a CA implies TLS
    for options, words in (({"tls": False}, "disagree"), ({"ca_file": pem, "address": "grpc://h:1"}, "plaintext"),
                           ({"cert_file": pem}, "needs its key"), ({"ca_file": tmp_path / "none.pem"}, "cannot read"),
                           ({"ca_file": tmp_path / "credentials"}, "cannot read")):
        address = str(options.pop("address", "grpcs://h:1"))
        with pytest.raises(quarry.UsageError, match=words):
            Config.resolve(address, **options)  # type: ignore[arg-type]


def test_no_token_is_unauthenticated_at_once(server_file: ServerHandle, no_env: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    with quarry.Client(server_file.address, cache_dir=tmp_path) as client, \
            pytest.raises(quarry.Unauthenticated) as refused:
        client.list_datasets().__next__()
    assert refused.value.reason == "TOKEN_MISSING" and isinstance(refused.value, quarry.PermissionDenied)
    assert time.monotonic() - started < 5  # not retried
    # GetCapabilities needs none: a client learns there that the server wants one.
    with quarry.Client(server_file.address, cache_dir=tmp_path) as client:
        assert client.get_capabilities().auth_mode == 1  # AUTH_MODE_TOKENS


def test_an_operator_makes_a_namespace_and_a_token_that_works(server_file: ServerHandle, tmp_path: Path) -> None:
    operator = server_operator(server_file.address)
    name = f"sdk-{int(time.time() * 1000) % 10**9}"
    with quarry.Client(server_file.address, token=operator, cache_dir=tmp_path) as admin:
        made = admin.create_namespace(name, max_datasets=5)
        assert made.quota.max_datasets == 5
        assert name in [n.name.removeprefix("namespaces/") for n in admin.list_namespaces()]
        issued = admin.create_token("sdk-writer", {name: "writer"}, expires=3600)
        assert issued.secret.startswith("qk_") and issued.secret not in repr(issued)
        assert issued.token.HasField("expire_time")
        changed = admin.update_namespace(name, requests_per_second=50)
        assert (changed.quota.max_datasets, changed.quota.requests_per_second) == (5, 50)
        with pytest.raises(quarry.UsageError):
            admin.update_namespace(name)
    with quarry.Client(server_file.address, namespace=name, token=issued.secret, cache_dir=tmp_path) as writer:
        writer.create_dataset("made-by-sdk")
        assert writer.get_namespace().usage.datasets == 1
        with pytest.raises(quarry.PermissionDenied) as denied:
            writer.delete_dataset("made-by-sdk")
        assert denied.value.reason == "ROLE_REQUIRED" and denied.value.metadata["role"] == "admin"
    with quarry.Client(server_file.address, namespace=name, token=operator, cache_dir=tmp_path) as admin:
        assert [t.principal for t in admin.list_tokens()] == ["sdk-writer"]
        events = list(admin.list_audit_events(principal="sdk-writer"))
        assert [(e.method.rsplit("/", 1)[1], e.code) for e in events] == [("DeleteDataset", "PERMISSION_DENIED"),
                                                                          ("CreateDataset", "OK")]
        revoked = admin.revoke_token(issued.secret)  # the whole token names it too; its secret is not sent
        assert revoked.name == issued.token.name and revoked.HasField("revoke_time")
    with quarry.Client(server_file.address, namespace=name, token=issued.secret, cache_dir=tmp_path) as writer, \
            pytest.raises(quarry.Unauthenticated) as gone:
        writer.get_namespace()
    assert gone.value.reason == "TOKEN_REVOKED"


async def test_the_async_client_has_the_same_calls(server_file: ServerHandle, tmp_path: Path) -> None:
    namespace, token = provision(server_file.address)
    async with quarry.AsyncClient(server_file.address, namespace=namespace, token=token, cache_dir=tmp_path) as c:
        issued = await c.create_token("async-reader", [(namespace, "reader")])
        assert [t.principal async for t in c.list_tokens()] == ["async-reader", "test"]
        assert (await c.get_namespace()).name == f"namespaces/{namespace}"
        assert [n.name async for n in c.list_namespaces()] == [f"namespaces/{namespace}"]
        assert [e.method.rsplit("/", 1)[1] async for e in c.list_audit_events(method="CreateToken", page_size=1)
                ][:1] == ["CreateToken"]
        await c.revoke_token(issued.token.name)
        with pytest.raises(quarry.PermissionDenied):
            await c.create_namespace("not-mine")


def test_a_rate_limit_is_waited_out_as_retry_info_says(server_file: ServerHandle, tmp_path: Path) -> None:
    operator = server_operator(server_file.address)
    namespace, _ = provision(server_file.address)
    with quarry.Client(server_file.address, token=operator, cache_dir=tmp_path) as admin:
        admin.update_namespace(namespace, requests_per_second=4)
    token = issue_token(server_file.address, operator, {namespace: "reader"})
    with quarry.Client(server_file.address, namespace=namespace, token=token, cache_dir=tmp_path) as client:
        started = time.monotonic()
        for _ in range(12):  # 4 at once, then one every 250 ms: each refusal says how long to wait
            client.get_namespace()
        assert 1.5 < time.monotonic() - started < 20
    never = quarry.RetryPolicy.never()
    with quarry.Client(server_file.address, namespace=namespace, token=token, cache_dir=tmp_path,
                       retry=never) as client, pytest.raises(quarry.ResourceExhausted) as limited:
        for _ in range(12):
            client.get_namespace()
    assert limited.value.reason == "RATE_LIMITED" and 0 < (limited.value.retry_delay or 0) <= 1
    assert limited.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
