"""Bad configuration exits non-zero with one line naming the variable and the problem."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from server.listen_ports import free_ports
from tests.support import ROOT, clean_env, refused_port


def run_module(module: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def assert_one_line_naming(result: subprocess.CompletedProcess[str], variable: str, words: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"quarry: {variable}: "), lines[0]
    assert words in lines[0], lines[0]


def with_fresh_ports(env: dict[str, str]) -> dict[str, str]:
    """env with gRPC and metrics ports that were free a moment ago, and differ from each other and from any port
    the caller holds bound (a port-in-use test's busy socket must not be the one the server checks first)."""
    grpc_port, metrics_port = free_ports(2)
    return dict(env, QUARRY_GRPC_ADDRESS=f"127.0.0.1:{grpc_port}", QUARRY_METRICS_PORT=str(metrics_port))


@pytest.fixture
def good_env(stack_envs: dict[str, dict[str, str]]) -> dict[str, str]:
    return with_fresh_ports(dict(stack_envs["file"], QUARRY_STARTUP_TIMEOUT_SECONDS="1"))


def test_unreachable_database(good_env: dict[str, str]) -> None:
    env = dict(good_env, QUARRY_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{refused_port()}/quarry")
    assert_one_line_naming(run_module("server", env), "QUARRY_DATABASE_URL", "cannot connect")


def test_unreachable_redis(good_env: dict[str, str]) -> None:
    env = dict(good_env, QUARRY_REDIS_URL=f"redis://127.0.0.1:{refused_port()}/0")
    assert_one_line_naming(run_module("server", env), "QUARRY_REDIS_URL", "cannot connect")


@pytest.mark.parametrize("url, words", [
    ("ftp://host/x", "scheme must be s3:// or file://"),
    ("s3://", "names no bucket"),
    ("s3://bucket?endpoint=localhost:9000", "endpoint must be an http(s) URL"),
    ("s3://bucket?regoin=x", "unknown s3 URL parameter"),
])
def test_malformed_storage_url(url: str, words: str) -> None:
    env = clean_env(QUARRY_STORAGE_URL=url)
    assert_one_line_naming(run_module("server", env), "QUARRY_STORAGE_URL", words)


def test_missing_bucket(good_env: dict[str, str], moto_endpoint: str) -> None:
    env = dict(good_env, QUARRY_STORAGE_URL=f"s3://no-such-bucket?endpoint={moto_endpoint}",
               QUARRY_S3_ACCESS_KEY_ID="test", QUARRY_S3_SECRET_ACCESS_KEY="test")
    assert_one_line_naming(run_module("server", env), "QUARRY_STORAGE_URL", "does not answer")


def test_grpc_port_in_use(good_env: dict[str, str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = dict(with_fresh_ports(good_env), QUARRY_GRPC_ADDRESS=f"127.0.0.1:{port}")
        assert_one_line_naming(run_module("server", env), "QUARRY_GRPC_ADDRESS", "cannot listen")


def test_flight_port_in_use(good_env: dict[str, str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        env = dict(with_fresh_ports(good_env), QUARRY_FLIGHT_ADDRESS=f"127.0.0.1:{busy.getsockname()[1]}")
        assert_one_line_naming(run_module("server", env), "QUARRY_FLIGHT_ADDRESS", "cannot listen")


def test_metrics_port_in_use(good_env: dict[str, str]) -> None:
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        env = dict(with_fresh_ports(good_env), QUARRY_METRICS_PORT=str(busy.getsockname()[1]))
        assert_one_line_naming(run_module("server", env), "QUARRY_METRICS_PORT", "cannot listen")


def test_unknown_variable_is_named_with_a_suggestion() -> None:
    env = clean_env(QUARRY_DATABSE_URL="postgresql://x")
    assert_one_line_naming(run_module("server", env), "QUARRY_DATABSE_URL", "did you mean QUARRY_DATABASE_URL")


@pytest.mark.parametrize("variable, value, words", [
    ("QUARRY_MAX_CHUNK_BYTES", "lots", "valid integer"),
    ("QUARRY_METRICS_PORT", "70000", "less than or equal to 65535"),
    ("QUARRY_LOG_LEVEL", "LOUD", "DEBUG"),
    ("QUARRY_GRPC_ADDRESS", "nowhere", "host:port"),
    ("QUARRY_FLIGHT_ADDRESS", "127.0.0.1", "host:port"),
    ("QUARRY_FLIGHT_SPLIT_BYTES", "1000", "greater than or equal to 1048576"),
    ("QUARRY_DATABASE_URL", "mysql://x", "postgresql://"),
    ("QUARRY_STREAM_WINDOW_BYTES", "1024", "greater than or equal to 65536"),
    ("QUARRY_MAX_PART_BYTES", str(6 * 1024 * 1024 + 1), "whole number of MiB"),
])
def test_bad_values(variable: str, value: str, words: str) -> None:
    assert_one_line_naming(run_module("server", clean_env(**{variable: value})), variable, words)


def test_worker_reports_bad_configuration_the_same_way() -> None:
    env = clean_env(QUARRY_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{refused_port()}/quarry",
                    QUARRY_STARTUP_TIMEOUT_SECONDS="1")
    assert_one_line_naming(run_module("workers", env), "QUARRY_DATABASE_URL", "cannot connect")


def test_client_variables_are_not_unknown(good_env: dict[str, str]) -> None:
    # QUARRY_ADDRESS belongs to the CLI; a server sharing the environment must not refuse it.
    env = dict(good_env, QUARRY_ADDRESS="127.0.0.1:1", QUARRY_DATABASE_URL="mysql://x")
    assert_one_line_naming(run_module("server", env), "QUARRY_DATABASE_URL", "postgresql://")


def test_a_buffer_budget_too_small_for_one_upload_stream_is_refused() -> None:
    env = clean_env(QUARRY_MAX_BUFFER_BYTES=str(32 << 20))  # below 2 MiB + 2 x 8 MiB + 16 MiB
    assert_one_line_naming(run_module("server", env), "QUARRY_MAX_BUFFER_BYTES", "at least one upload stream")


def test_max_part_below_min_part_is_refused() -> None:
    env = clean_env(QUARRY_MIN_PART_BYTES=str(64 << 20), QUARRY_MAX_PART_BYTES=str(32 << 20))
    assert_one_line_naming(run_module("server", env), "QUARRY_MAX_PART_BYTES", "at least QUARRY_MIN_PART_BYTES")
