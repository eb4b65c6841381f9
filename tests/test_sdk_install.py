"""The SDK installs on its own in a clean virtualenv, and needs none of the server's dependencies."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import ROOT, clean_env

# A fresh virtualenv and a pip install (~13 s): the acceptance tier runs it, `make test` does not.
pytestmark = pytest.mark.acceptance

CHECK = textwrap.dedent("""
    import importlib.util, sys
    import quarry
    from quarry.v1 import dataset_service_pb2_grpc, upload_service_pb2
    assert quarry.Client and quarry.AsyncClient and quarry.RetryPolicy, "public API"
    assert set(quarry.__all__) <= set(dir(quarry))
    for name in ("asyncpg", "aioboto3", "pyarrow", "server", "workers", "arq"):
        assert importlib.util.find_spec(name) is None, f"{name} is importable in the clean venv"
    import quarry.cli  # the CLI too
    assert "pyarrow" not in sys.modules and "server" not in sys.modules
    try:
        quarry.Client("127.0.0.1:1", namespace="x").preview  # preview exists without pyarrow ...
        from quarry._preview import to_table
        to_table(None)
    except quarry.MissingDependency as exc:  # ... and says how to get it when used
        assert "quarry-client[arrow]" in str(exc)
    else:
        raise AssertionError("preview without pyarrow did not raise MissingDependency")
    print("OK", quarry.__version__)
""")


# Variables that would point the new virtualenv's Python at this one's packages.
OUTSIDE = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sdk_installs_alone_in_a_clean_virtualenv(tmp_path: Path) -> None:
    env = clean_env(without=OUTSIDE)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    # Install a copy: pip builds in the source tree, and the checkout is shared (and has an editable install).
    source = tmp_path / "quarry-client"
    shutil.copytree(ROOT / "clients" / "python", source,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    installed = subprocess.run([python, "-m", "pip", "install", "--quiet", str(source)],
                               capture_output=True, text=True, timeout=800, env=env, cwd=tmp_path)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    checked = subprocess.run([python, "-c", CHECK], capture_output=True, text=True, timeout=120, env=env,
                             cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("OK ")
    # The `quarry` script works, without the server's commands (they come with the server package).
    helped = subprocess.run([str(venv / "bin" / "quarry"), "--help"], capture_output=True, text=True, timeout=60,
                            env=env, cwd=tmp_path)
    assert helped.returncode == 0 and "upload" in helped.stdout and "Run the gRPC server" not in helped.stdout
    down = subprocess.run([str(venv / "bin" / "quarry"), "--address", "127.0.0.1:1", "--retry-for", "1", "datasets",
                           "ls"],
                          capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert down.returncode == 3 and down.stderr.startswith("quarry: UNAVAILABLE: ")
