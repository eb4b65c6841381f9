"""No password, token or secret key in any error message, log line or metric label."""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import pytest
from quarry.v1 import namespace_service_pb2 as npb

from server.listen_ports import free_port
from server.logs import JsonFormatter, RedactSecrets
from server.model.redaction import redact
from tests.support import (
    ROOT,
    bearer,
    clean_env,
    issue_token,
    read_metrics,
    refused_port,
    server_operator,
    start_server,
)

SECRET = "hunter2-s3cr3t"


def run_module(module: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("module, variable, value, words", [
    ("server", "QUARRY_DATABASE_URL", f"mysql://quarry:{SECRET}@db/quarry", "postgresql://"),
    ("server", "QUARRY_DATABASE_URL", f"postgresql://quarry:{SECRET}@127.0.0.1:{refused_port()}/quarry",
     "cannot connect"),
    ("workers", "QUARRY_DATABASE_URL", f"postgresql://quarry@127.0.0.1:{refused_port()}/quarry?password={SECRET}",
     "cannot connect"),
    ("server", "QUARRY_REDIS_URL", f"redis://:{SECRET}@127.0.0.1:{refused_port()}/0", "cannot connect"),
    ("workers", "QUARRY_REDIS_URL", f"redis://:{SECRET}@127.0.0.1:{refused_port()}/0", "cannot connect"),
    ("workers", "QUARRY_REDIS_URL", f"ftp://user:{SECRET}@redis/0", "must start with redis://"),
])
@pytest.mark.acceptance
def test_configuration_errors_never_show_a_password(stack_envs: dict[str, dict[str, str]], module: str,
                                                    variable: str, value: str, words: str) -> None:
    env = dict(stack_envs["file"], **{variable: value}, QUARRY_STARTUP_TIMEOUT_SECONDS="1",
               QUARRY_GRPC_ADDRESS=f"127.0.0.1:{free_port()}", QUARRY_METRICS_PORT="0",
               QUARRY_WORKER_METRICS_PORT="0")
    result = run_module(module, env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"quarry: {variable}: ") and words in result.stderr, result.stderr
    assert SECRET not in result.stderr + result.stdout
    assert "***" in result.stderr or "mysql" in value or "ftp" in value


def test_a_bad_s3_secret_key_is_never_echoed(stack_envs: dict[str, dict[str, str]], moto_endpoint: str) -> None:
    env = dict(stack_envs["file"], QUARRY_STORAGE_URL=f"s3://no-such-bucket?endpoint={moto_endpoint}",
               QUARRY_S3_ACCESS_KEY_ID="test", QUARRY_S3_SECRET_ACCESS_KEY=SECRET,
               QUARRY_STARTUP_TIMEOUT_SECONDS="1", QUARRY_GRPC_ADDRESS=f"127.0.0.1:{free_port()}",
               QUARRY_METRICS_PORT="0")
    result = run_module("server", env)
    assert result.returncode == 2 and result.stderr.startswith("quarry: QUARRY_STORAGE_URL: "), result.stderr
    assert SECRET not in result.stderr


def test_requests_with_tokens_are_logged_without_them(stack_envs: dict[str, dict[str, str]],
                                                      tmp_path: Path) -> None:
    handle = start_server(dict(stack_envs["file"], QUARRY_LOG_LEVEL="DEBUG"), tmp_path, "debug-server", "file")
    try:
        operator = server_operator(handle.address)
        namespace = f"t-{uuid.uuid4().hex[:12]}"
        with grpc.insecure_channel(handle.address) as channel:
            stub = __import__("quarry.v1.namespace_service_pb2_grpc", fromlist=["x"]).NamespaceServiceStub(channel)
            stub.CreateNamespace(npb.CreateNamespaceRequest(namespace_id=namespace), metadata=bearer(operator))
            token = issue_token(handle.address, operator, {namespace: "reader"})
            stub.GetNamespace(npb.GetNamespaceRequest(name=f"namespaces/{namespace}"), metadata=bearer(token))
            forged = f"qk_{token.split('_')[1]}_{'Z' * 43}"
            for metadata in (bearer(forged), (("authorization", f"Basic {SECRET}"),)):
                with pytest.raises(grpc.RpcError) as refused:
                    stub.GetNamespace(npb.GetNamespaceRequest(name=f"namespaces/{namespace}"), metadata=metadata)
                assert SECRET not in (refused.value.details() or "")  # type: ignore[attr-defined]
        metrics_text = read_metrics(handle.metrics_port)
    finally:
        handle.process.stop()
    log = handle.process.log()
    assert '"message": "call"' in log and token.split("_")[1] in log  # calls are logged, by token id
    for secret in (token.split("_", 2)[2], operator.split("_", 2)[2], "Z" * 43, SECRET):
        assert secret not in log
        assert secret not in metrics_text
    assert "quarry_auth_denied_total" in metrics_text


def test_the_log_filter_redacts_whatever_logs_a_secret() -> None:
    token = f"qk_0123456789abcdef_{'s' * 43}"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "connect %s with %s", (
        f"postgresql://u:{SECRET}@h/db", token), None)
    record.url = f"redis://:{SECRET}@h/0"
    try:
        raise RuntimeError(f"boom {token}")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    assert RedactSecrets().filter(record)
    line = JsonFormatter().format(record)
    assert SECRET not in line and "s" * 43 not in line
    assert "qk_0123456789abcdef_***" in line and "u:***@h" in line
    assert redact("plain text") == "plain text"


def test_the_client_variables_never_stop_a_server(stack_envs: dict[str, dict[str, str]], tmp_path: Path) -> None:
    env = dict(stack_envs["file"], QUARRY_TOKEN="qk_0123456789abcdef_" + "x" * 43, QUARRY_CREDENTIALS="/nowhere",
               QUARRY_ADDRESS="127.0.0.1:1", QUARRY_NAMESPACE="elsewhere", QUARRY_CA_FILE="/nowhere.pem")
    handle = start_server(clean_env(**env), tmp_path, "client-variables", "file")
    handle.process.stop()
