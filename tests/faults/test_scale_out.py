"""Two server replicas and two workers behind a real nginx running deploy/nginx.conf.

An SDK `upload_file` goes through the balancer; mid-upload the replica its stream is on is killed (-9). The
SDK asks again through the balancer, which sends it to the other replica; the upload resumes from the
committed parts and ends READY with the sha256 of the file, read back through the balancer.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from quarry.v1 import upload_pb2

from server.listen_ports import free_port
from tests.faults.cluster import Cluster, MiB, read_back_sha256, ready_sha256, write_random
from tests.support import ROOT, ServerHandle, open_api, read_metrics, register_server, wait_serving

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def balancer_config(replicas: list[str], port: int) -> str:
    """deploy/nginx.conf with its upstream naming `replicas` and listening on `port`: the committed proxy
    settings, this test's addresses."""
    config = (ROOT / "deploy" / "nginx.conf").read_text()
    upstream = re.search(r"^\s*server server:50051 (.*);$", config, re.MULTILINE)
    assert upstream is not None, "deploy/nginx.conf names no `server server:50051` upstream"
    lines = "\n".join(f"        server {address} {upstream.group(1)};" for address in replicas)
    config = config.replace(upstream.group(0), lines)
    assert "listen 50051 http2;" in config
    return config.replace("listen 50051 http2;", f"listen 127.0.0.1:{port} http2;")


def start_nginx(directory: Path, replicas: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    if not Path(NGINX).exists():
        pytest.fail("nginx is not installed: `make test-faults` installs it (apt-get install -y nginx)")
    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "nginx.conf"
    conf.write_text(balancer_config(replicas, port))
    settings = f"daemon off; pid {directory / 'nginx.pid'}; error_log {directory / 'error.log'} info;"
    checked = subprocess.run([NGINX, "-t", "-p", str(directory), "-c", str(conf), "-g", settings],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen([NGINX, "-p", str(directory), "-c", str(conf), "-g", settings],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return process, f"127.0.0.1:{port}"


def streams_on(server: ServerHandle) -> float:
    for line in read_metrics(server.metrics_port).splitlines():
        if line.startswith("quarry_upload_active_streams "):
            return float(line.split()[1])
    return 0.0


@pytest.mark.timeout(600)
async def test_an_upload_through_the_balancer_survives_its_replica_killed(cluster: Cluster, tmp_path: Path) -> None:
    replicas = [cluster.start_server(f"server{i}") for i in range(2)]
    workers = [cluster.start_worker(f"worker{i}") for i in range(2)]
    balancer, address = start_nginx(tmp_path / "nginx", [r.address for r in replicas])
    register_server(address, cluster.env)  # the replicas' operator, for tokens asked for through the balancer
    try:
        await asyncio.to_thread(wait_serving, address)  # health through the balancer
        path = tmp_path / "big.bin"
        size = 7 * 16 * MiB + 4321  # eight parts
        sha = write_random(path, size)
        killed: list[tuple[ServerHandle, int, float]] = []

        def progress(done: int, _: int) -> None:
            if done >= size * 2 // 5 and not killed:
                on = [r for r in replicas if streams_on(r) > 0]
                assert len(on) == 1, "the stream is on one replica"
                on[0].process.kill()
                killed.append((on[0], done, time.monotonic()))

        namespace = "scale-out"
        async with cluster.client(namespace, address) as client:
            result = await asyncio.wait_for(
                client.upload_file(path, "scaled", wait=True, streams=1, progress=progress), 300)
        victim, at, when = killed[0]
        ready = time.monotonic() - when
        assert result.upload.state == upload_pb2.UPLOAD_STATE_PROMOTED and result.sha256 == sha
        assert result.streams >= 2  # a stream was opened again, on the other replica
        survivor = next(r for r in replicas if r is not victim)
        assert survivor.process.process is not None and survivor.process.process.poll() is None
        through = open_api(address, namespace)  # read back through the balancer too
        try:
            assert await ready_sha256(through, result.upload) == sha
            assert await read_back_sha256(through, result.upload) == sha
        finally:
            await through.channel.close()
        assert all(w.alive() for w in workers)
        assert await cluster.wait_no_leftovers(namespace) == {"uploads": {}, "versions": 0, "staged": 0,
                                                              "multipart": 0, "unreferenced": 0}
        print(f"\nreplica killed with {at / MiB:.0f} of {size / MiB:.0f} MiB sent; READY {ready:.1f} s later through "
              f"the other replica; {result.streams} streams, {result.bytes_sent / MiB:.0f} MiB sent in all")
    finally:
        balancer.terminate()
        balancer.wait(10)
