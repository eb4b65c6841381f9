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
