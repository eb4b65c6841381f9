"""The type checker and the linter run with the tests (generated code excluded)."""

from __future__ import annotations

import subprocess
import sys

from tests.support import ROOT


def test_mypy() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-5000:]


def test_ruff() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "server", "workers", "tests", "scripts", "bench",
                             "clients/python/src"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-5000:]
