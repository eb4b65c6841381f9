"""TLS and mutual TLS: the server serves with the certificate it is given, clients that do not trust it (or
speak plaintext) fail at once rather than hang, and with a client CA only clients holding a certificate it
signed (and still valid) get in."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from quarry.v1 import capabilities_service_pb2 as cpb
from quarry.v1 import capabilities_service_pb2_grpc as cpb_grpc
from quarry.v1 import namespace_service_pb2 as npb
from quarry.v1 import namespace_service_pb2_grpc as npb_grpc

from server.listen_ports import free_port
from tests.certificates import Authority, Issued
from tests.support import ROOT, ServerHandle, bearer, server_operator, start_server

pytestmark = [pytest.mark.slow, pytest.mark.acceptance]


@pytest.fixture(scope="module")
def authorities(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    directory = tmp_path_factory.mktemp("pki")
    trusted, stranger = Authority(directory, "quarry-test-ca"), Authority(directory, "stranger-ca")
    return {
        "ca": trusted, "wrong-ca": stranger,
        "server": trusted.issue("server", server=True),
        "expired-server": trusted.issue("expired-server", server=True, expired=True),
        "client": trusted.issue("client", server=False),
        "expired-client": trusted.issue("expired-client", server=False, expired=True),
        "stranger-client": stranger.issue("stranger-client", server=False),
    }


def credentials(ca: Authority, client: Issued | None = None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(root_certificates=ca.pem.read_bytes(),
                                        private_key=client.key_pem() if client else None,
                                        certificate_chain=client.cert_pem() if client else None)


def tls_env(env: dict[str, str], server: Issued, client_ca: Authority | None = None) -> dict[str, str]:
    extra = {"QUARRY_TLS_CERT_FILE": str(server.cert), "QUARRY_TLS_KEY_FILE": str(server.key)}
    if client_ca is not None:
        extra["QUARRY_TLS_CLIENT_CA_FILE"] = str(client_ca.pem)
    return dict(env, **extra)


def capabilities(address: str, creds: grpc.ChannelCredentials | None,
                 timeout: float = 10) -> cpb.GetCapabilitiesResponse:
    channel = grpc.secure_channel(address, creds) if creds else grpc.insecure_channel(address)
    with channel:
        return cpb_grpc.CapabilitiesServiceStub(channel).GetCapabilities(cpb.GetCapabilitiesRequest(),
                                                                        timeout=timeout)


def refused_quickly(address: str, creds: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    """The call fails (it does not hang): its status code."""
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as failed:
        capabilities(address, creds, timeout=10)
    assert time.monotonic() - started < 9, "the client waited for its deadline instead of failing"
    return failed.value.code()  # type: ignore[attr-defined,no-any-return]


@pytest.fixture(scope="module")
def tls_server(stack_envs: dict[str, dict[str, str]], authorities: dict[str, object],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    ca, server = authorities["ca"], authorities["server"]
    handle = start_server(tls_env(stack_envs["file"], server), tmp_path_factory.mktemp("tls"),  # type: ignore[arg-type]
                          "tls-server", "file", credentials=credentials(ca))  # type: ignore[arg-type]
    yield handle
    handle.process.stop()


def test_tls_serves_clients_that_trust_it(tls_server: ServerHandle, authorities: dict[str, object]) -> None:
    ca = authorities["ca"]
    answer = capabilities(tls_server.address, credentials(ca))  # type: ignore[arg-type]
    assert answer.tls_required and not answer.client_certificate_required
    assert answer.auth_mode == cpb.AUTH_MODE_TOKENS
    # Tokens work over TLS as over plaintext.
    with grpc.secure_channel(tls_server.address, credentials(ca)) as channel:  # type: ignore[arg-type]
        stub = npb_grpc.NamespaceServiceStub(channel)
        name = f"tls-{uuid.uuid4().hex[:8]}"
        stub.CreateNamespace(npb.CreateNamespaceRequest(namespace_id=name),
                             metadata=bearer(server_operator(tls_server.address)), timeout=10)


def test_clients_that_do_not_trust_it_fail_at_once(tls_server: ServerHandle,
                                                   authorities: dict[str, object]) -> None:
    assert refused_quickly(tls_server.address, credentials(authorities["wrong-ca"])) == \
        grpc.StatusCode.UNAVAILABLE  # type: ignore[arg-type]
    assert refused_quickly(tls_server.address, None) == grpc.StatusCode.UNAVAILABLE  # plaintext


def test_an_expired_server_certificate_is_refused_by_clients(stack_envs: dict[str, dict[str, str]],
                                                             authorities: dict[str, object], tmp_path: Path) -> None:
    from tests.support import QuarryProcess

    env = tls_env(stack_envs["file"], authorities["expired-server"])  # type: ignore[arg-type]
    address = f"127.0.0.1:{free_port()}"
    process = QuarryProcess("server", dict(env, QUARRY_GRPC_ADDRESS=address, QUARRY_METRICS_PORT="0"),
                            tmp_path / "expired.log").start()
    try:
        deadline = time.monotonic() + 30
        while "serving" not in process.log():
            assert time.monotonic() < deadline and process.process.poll() is None, process.log()  # type: ignore
            time.sleep(0.1)
        assert refused_quickly(address, credentials(authorities["ca"])) == \
            grpc.StatusCode.UNAVAILABLE  # type: ignore[arg-type]
    finally:
        process.stop()


@pytest.fixture(scope="module")
def mtls_server(stack_envs: dict[str, dict[str, str]], authorities: dict[str, object],
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """A server that requires client certificates signed by the trusted CA."""
    ca = authorities["ca"]
    env = tls_env(stack_envs["file"], authorities["server"], client_ca=ca)  # type: ignore[arg-type]
    handle = start_server(env, tmp_path_factory.mktemp("mtls"), "mtls-server", "file",
                          credentials=credentials(ca, authorities["client"]))  # type: ignore[arg-type]
    yield handle
    handle.process.stop()


def test_mutual_tls_admits_only_valid_client_certificates(mtls_server: ServerHandle,
                                                          authorities: dict[str, object]) -> None:
    ca = authorities["ca"]
    answer = capabilities(mtls_server.address, credentials(ca, authorities["client"]))  # type: ignore[arg-type]
    assert answer.tls_required and answer.client_certificate_required
    for client in (None, authorities["stranger-client"], authorities["expired-client"]):
        assert refused_quickly(mtls_server.address, credentials(ca, client)) == \
            grpc.StatusCode.UNAVAILABLE, client  # type: ignore[arg-type]


@pytest.mark.parametrize("variables, named, words", [
    ({"QUARRY_TLS_CERT_FILE": "server"}, "QUARRY_TLS_KEY_FILE", "go together"),
    ({"QUARRY_TLS_KEY_FILE": "server-key"}, "QUARRY_TLS_CERT_FILE", "go together"),
    ({"QUARRY_TLS_CLIENT_CA_FILE": "ca"}, "QUARRY_TLS_CLIENT_CA_FILE", "need TLS"),
    ({"QUARRY_TLS_CERT_FILE": "/no/such/file.pem", "QUARRY_TLS_KEY_FILE": "server-key"}, "QUARRY_TLS_CERT_FILE",
     "cannot read"),
    ({"QUARRY_TLS_CERT_FILE": str(ROOT / "README.md"), "QUARRY_TLS_KEY_FILE": "server-key"},
     "QUARRY_TLS_CERT_FILE", "not a PEM file"),
    ({"QUARRY_TLS_CERT_FILE": "server", "QUARRY_TLS_KEY_FILE": "client-key"}, "QUARRY_TLS_KEY_FILE",
     "is not the key of the certificate"),
])
def test_tls_settings_are_checked_at_start(stack_envs: dict[str, dict[str, str]], authorities: dict[str, object],
                                           variables: dict[str, str], named: str, words: str) -> None:
    from tests.test_config import assert_one_line_naming, run_module

    paths = {"server": str(authorities["server"].cert), "server-key": str(authorities["server"].key),  # type: ignore
             "client-key": str(authorities["client"].key), "ca": str(authorities["ca"].pem)}  # type: ignore
    env = dict(stack_envs["file"], QUARRY_GRPC_ADDRESS=f"127.0.0.1:{free_port()}", QUARRY_METRICS_PORT="0",
               **{k: paths.get(v, v) for k, v in variables.items()})
    assert_one_line_naming(run_module("server", env), named, words)


# --- the SDK and the CLI over TLS ---------------------------------------------------------------------------


def sdk_call(address: str, **options: object) -> float:
    """Seconds one GetCapabilities took through the SDK (raising what it raised)."""
    import quarry

    started = time.monotonic()
    with quarry.Client(address, **options) as client:  # type: ignore[arg-type]
        client.get_capabilities()
    return time.monotonic() - started


def test_the_sdk_speaks_tls_and_names_a_mismatch_at_once(tls_server: ServerHandle, server_file: ServerHandle,
                                                         authorities: dict[str, object], tmp_path: Path) -> None:
    import quarry

    ca = authorities["ca"].pem  # type: ignore[attr-defined]
    sdk_call(f"grpcs://{tls_server.address}", ca_file=ca, cache_dir=tmp_path)
    with quarry.Client(tls_server.address, ca_file=ca, token=server_operator(tls_server.address),
                       cache_dir=tmp_path) as client:  # a CA implies TLS
        assert client.get_capabilities().tls_required
        assert "namespaces/default" in [n.name for n in client.list_namespaces()]
    cases = [
        (tls_server.address, {}, "speaks TLS: connect to grpcs://"),  # plaintext to a TLS server
        (f"grpcs://{tls_server.address}", {"ca_file": authorities["wrong-ca"].pem},  # type: ignore[attr-defined]
         "is not trusted"),
        (f"grpcs://{server_file.address}", {"ca_file": ca}, "does not speak TLS"),  # TLS to a plaintext server
    ]
    for address, options, words in cases:
        started = time.monotonic()
        with pytest.raises(quarry.TlsError, match=words):
            sdk_call(address, cache_dir=tmp_path, **options)
        assert time.monotonic() - started < 10, f"{address}: retried instead of failing at once"


def test_the_sdk_presents_a_client_certificate(mtls_server: ServerHandle, authorities: dict[str, object],
                                               tmp_path: Path) -> None:
    import quarry

    ca, client, expired = authorities["ca"], authorities["client"], authorities["expired-client"]
    address = f"grpcs://{mtls_server.address}"
    sdk_call(address, ca_file=ca.pem, cert_file=client.cert, key_file=client.key,  # type: ignore[attr-defined]
             cache_dir=tmp_path)
    with pytest.raises(quarry.TlsError, match="requires a client certificate"):
        sdk_call(address, ca_file=ca.pem, cache_dir=tmp_path)  # type: ignore[attr-defined]
    with pytest.raises(quarry.TlsError, match="refused the client certificate"):
        sdk_call(address, ca_file=ca.pem, cert_file=expired.cert, key_file=expired.key,  # type: ignore
                 cache_dir=tmp_path)


def test_the_cli_takes_grpcs_and_a_ca_file(tls_server: ServerHandle, authorities: dict[str, object],
                                           tmp_path: Path) -> None:
    from tests.sdk_support import Cli, assert_one_line_error

    ca = str(authorities["ca"].pem)  # type: ignore[attr-defined]
    secure = Cli(f"grpcs://{tls_server.address}", "default", tmp_path / "cache",
                 token=server_operator(tls_server.address), options=("--ca-file", ca))
    assert "namespaces/default" in [n["name"] for n in secure.json("namespaces", "ls")]
    plain = Cli(tls_server.address, "default", tmp_path / "cache", token=server_operator(tls_server.address))
    line = assert_one_line_error(plain.run("namespaces", "ls", timeout=30), 3)
    assert "speaks TLS" in line
