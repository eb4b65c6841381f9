"""A client made only from proto/ plus the standard health proto (no project code) can use the server."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

from grpc_tools import protoc

from tests.support import ROOT, ServerHandle

CLIENT = textwrap.dedent("""
    import sys
    import grpc
    import quarry
    paths = list(quarry.__path__)  # the stubs made here, not the SDK
    assert all(p.startswith(sys.argv[2]) for p in paths), paths
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from quarry.v1 import capabilities_service_pb2 as caps, capabilities_service_pb2_grpc as caps_grpc
    from quarry.v1 import dataset_service_pb2_grpc

    channel = grpc.insecure_channel(sys.argv[1])
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING, health
    answer = caps_grpc.CapabilitiesServiceStub(channel).GetCapabilities(caps.GetCapabilitiesRequest(), timeout=10)
    assert answer.max_chunk_bytes > 0 and answer.max_message_bytes > answer.max_chunk_bytes, answer
    assert answer.min_part_size_bytes >= 5 << 20 and answer.server_version, answer
    print("OK", answer.server_version, answer.max_chunk_bytes, len(answer.formats))
""")


def generate_bare_client(out: Path) -> None:
    """Compile proto/ with protoc alone, into a directory of nothing but generated code."""
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto/quarry/v1").glob("*.proto"))
    args = ["protoc", f"-I{ROOT / 'proto'}", f"-I{Path(protoc.__file__).parent / '_proto'}",
            f"--python_out={out}", f"--grpc_python_out={out}", *protos]
    assert protoc.main(args) == 0


def test_bare_generated_client_gets_serving_and_capabilities(server_file: ServerHandle, tmp_path: Path) -> None:
    generate_bare_client(tmp_path)
    (tmp_path / "client.py").write_text(CLIENT)
    # -S: no site processing, so the editable installs of this project are invisible; only the
    # third-party packages (grpc, protobuf, grpc_health) are reachable through PYTHONPATH.
    site_packages = sysconfig.get_paths()["purelib"]
    result = subprocess.run([sys.executable, "-S", str(tmp_path / "client.py"), server_file.address, str(tmp_path)],
                            env={"PYTHONPATH": f"{tmp_path}:{site_packages}"}, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK ")
