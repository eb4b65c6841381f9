"""The README's quick start, as written: `quarry dev` (what `make run` runs) in one shell, the README's commands
in another, with nothing set up in between; then a reader's token in a third shell that holds only
QUARRY_TOKEN: it reads, it cannot upload."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import pytest

from server.listen_ports import free_ports
from tests.sdk_support import assert_one_line_error
from tests.support import ROOT, clean_env
from tests.test_dev import start_dev, wait_announced

pytestmark = [pytest.mark.slow, pytest.mark.acceptance]


def quick_start_commands() -> list[str]:
    """The commands of the README's second quick-start block (the other shell), comments dropped."""
    section = (ROOT / "README.md").read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    assert blocks[0].strip() == "make run", blocks[0]
    commands = [line.split("#", 1)[0].strip() for line in blocks[1].splitlines()]
    return [command for command in commands if command]


def shell(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


def test_the_readme_quick_start_works_as_written(tmp_path: Path) -> None:
    commands = quick_start_commands()
    assert len(commands) >= 5 and all(c.startswith(".venv/bin/quarry ") for c in commands)
    # A checkout of our own (its .venv and examples), so the commands' relative paths and output files land here.
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in (".venv", "examples"):
        (checkout / name).symlink_to(ROOT / name)
    home = tmp_path / "config"  # ~/.config of this user: where `quarry dev` writes the credentials
    port, metrics_port, worker_metrics_port = free_ports(3)
    address = f"127.0.0.1:{port}"
    env = clean_env(XDG_CONFIG_HOME=str(home), QUARRY_METRICS_PORT=str(metrics_port),
                    QUARRY_WORKER_METRICS_PORT=str(worker_metrics_port))
    dev = start_dev(checkout / ".quarry", address, env)
    try:
        wait_announced(dev)
        # The other shell: only what any shell has. The credentials file `quarry dev` wrote names its server.
        other = clean_env(XDG_CONFIG_HOME=str(home))
        for command in commands:
            result = shell(command, checkout, other)
            assert result.returncode == 0, f"{command}: exit {result.returncode}\n{result.stderr}"
        assert (checkout / "sales-copy.csv").read_bytes() == (ROOT / "examples" / "sales.csv").read_bytes()
        listed = shell(".venv/bin/quarry datasets ls", checkout, other).stdout
        assert "sales" in listed and "ACTIVE" in listed

        issued = shell(".venv/bin/quarry tokens create --name viewer --grant default=reader", checkout, other)
        assert issued.returncode == 0, issued.stderr
        # A third shell with nothing but the reader's token (and the address, as this test's server has its own).
        reader = clean_env(XDG_CONFIG_HOME=str(tmp_path / "nothing"), QUARRY_TOKEN=issued.stdout.strip(),
                           QUARRY_ADDRESS=address)
        read = shell(".venv/bin/quarry versions sales", checkout, reader)
        assert read.returncode == 0 and "READY" in read.stdout, read.stderr
        upload = shell(".venv/bin/quarry upload examples/sales.csv --dataset sales", checkout, reader)
        assert "writer role" in assert_one_line_error(upload, 1, "PERMISSION_DENIED")
    finally:
        dev.send_signal(signal.SIGINT)
        try:
            dev.wait(60)
        except subprocess.TimeoutExpired:
            dev.kill()
