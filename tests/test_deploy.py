"""docker-compose.yml and the Dockerfile stay consistent with the code (no Docker engine runs here)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import yaml

from server.settings import CLIENT_VARIABLES, PREFIX, Settings, parse_storage_url
from tests.support import ROOT


def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_compose_has_every_part() -> None:
    services = compose()["services"]
    assert {"postgres", "redis", "minio", "create-bucket", "server", "worker"} <= set(services)
    assert services["server"]["command"] == ["quarry", "serve"]
    assert services["worker"]["command"] == ["quarry", "worker"]


def test_compose_sets_only_known_settings_with_valid_values() -> None:
    known = {PREFIX + name.upper() for name in Settings.model_fields} | CLIENT_VARIABLES
    for name in ("server", "worker"):
        env = compose()["services"][name]["environment"]
        unknown = {k for k in env if k.startswith(PREFIX)} - known
        assert not unknown, f"{name} sets unknown variables {unknown}"
        Settings(**{k.removeprefix(PREFIX).lower(): str(v) for k, v in env.items()})  # validates every value
        location = parse_storage_url(env["QUARRY_STORAGE_URL"])
        bucket_command = " ".join(compose()["services"]["create-bucket"]["command"])
        assert f"local/{getattr(location, 'bucket', '')}" in bucket_command


def test_dockerfile_installs_every_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    for top in {p.rstrip("*").split(".")[0] for p in include}:
        assert f"COPY {top} /app/{top}" in dockerfile, top
    assert "COPY clients/python" in dockerfile


def test_the_built_wheel_holds_every_package(tmp_path: Path) -> None:
    # What the image installs is a built wheel, not the editable install the tests run on: every package
    # (each directory with an __init__.py) and the migrations must be in it.
    # Built from a copy, as the Dockerfile copies them: a build/ directory left in the checkout would hide a gap.
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source)
    for top in ("server", "workers", "migrations"):
        shutil.copytree(ROOT / top, source / top, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(source)], check=True, capture_output=True, timeout=300)
    [wheel] = tmp_path.glob("quarry_server-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for top in ("server", "workers", "migrations"):
        for init in (ROOT / top).rglob("__init__.py"):
            assert init.relative_to(ROOT).as_posix() in names, init
    for migration in (ROOT / "migrations").glob("*.sql"):
        assert f"migrations/{migration.name}" in names


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"`{PREFIX}{name.upper()}`" in readme, name


LONG_RUNNING = ("postgres", "redis", "minio", "server", "worker", "balancer")


def test_every_long_running_service_restarts_when_it_dies() -> None:
    services = compose()["services"]
    for name in LONG_RUNNING:
        assert services[name].get("restart") in ("unless-stopped", "always", "on-failure"), name


def test_replicas_scale_without_host_port_collisions_behind_the_balancer() -> None:
    services = compose()["services"]
    # Only the balancer publishes a host port: `--scale server=N --scale worker=M` fits on one host.
    for name in ("server", "worker"):
        assert "ports" not in services[name], f"{name} publishes a host port: replicas would collide"
    server_port = services["server"]["environment"]["QUARRY_GRPC_ADDRESS"].rsplit(":", 1)[1]
    assert server_port in [str(p) for p in services["server"]["expose"]]
    balancer = services["balancer"]
    assert balancer["image"].startswith("nginx")
    assert any(p.endswith(":50051") for p in balancer["ports"])
    assert balancer["depends_on"]["server"]["condition"] == "service_healthy"
    [mount] = [v for v in balancer["volumes"] if v.endswith(":/etc/nginx/nginx.conf:ro")]
    config = (ROOT / mount.split(":", 1)[0]).read_text()
    assert f"server server:{server_port}" in config  # every replica of the compose service
    assert "listen 50051 http2;" in config and "grpc_pass grpc://quarry_servers;" in config
    assert "client_max_body_size 0;" in config  # uploads of any size pass


def test_the_worker_healthcheck_asks_its_health_endpoint() -> None:
    worker = compose()["services"]["worker"]
    port = worker["environment"]["QUARRY_WORKER_METRICS_PORT"]
    assert f"127.0.0.1:{port}/health" in " ".join(worker["healthcheck"]["test"])
    assert str(port) in [str(p) for p in worker["expose"]]
