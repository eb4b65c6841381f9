"""A client made only from proto/ plus the standard health proto (no project code) can use the server: health,
capabilities, and a version committed and followed with WatchVersion to READY."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

from grpc_tools import protoc

from tests.support import ROOT, QuarryProcess, ServerHandle, server_operator

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


COMMIT = textwrap.dedent("""
    import hashlib, sys, uuid
    import grpc
    import quarry
    assert all(p.startswith(sys.argv[2]) for p in quarry.__path__), quarry.__path__
    from quarry.v1 import dataset_service_pb2 as ds, dataset_service_pb2_grpc as ds_grpc
    from quarry.v1 import upload_pb2, upload_service_pb2 as up, upload_service_pb2_grpc as up_grpc
    from quarry.v1 import namespace_service_pb2 as ns, namespace_service_pb2_grpc as ns_grpc
    from quarry.v1 import version_pb2

    channel = grpc.insecure_channel(sys.argv[1])
    # The operator's token, as the contract says: `authorization: Bearer <token>` on every call; it makes the
    # namespace, and `x-quarry-namespace` picks it for the calls whose request names none.
    namespace = "bare-" + uuid.uuid4().hex[:8]
    auth = (("authorization", "Bearer " + sys.argv[3]),)
    ns_grpc.NamespaceServiceStub(channel).CreateNamespace(ns.CreateNamespaceRequest(namespace_id=namespace),
                                                          metadata=auth, timeout=30)
    meta = auth + (("x-quarry-namespace", namespace),)
    uploads, datasets = up_grpc.UploadServiceStub(channel), ds_grpc.DatasetServiceStub(channel)
    data = b"id,name\\n" + b"".join(b"%d,n%d\\n" % (i, i) for i in range(50))
    names = []
    for path in ("a.csv", "b.csv"):  # one Upload call each: header, a chunk, finish with the sha256
        header = up.UploadHeader(create=up.CreateUploadRequest(upload=upload_pb2.Upload(dataset="bare", path=path)))
        messages = [up.UploadRequest(header=header), up.UploadRequest(chunk=up.UploadChunk(data=data)),
                    up.UploadRequest(finish=up.UploadFinish(sha256=hashlib.sha256(data).hexdigest()))]
        response, call = uploads.Upload.with_call(iter(messages), metadata=meta, timeout=30)
        assert dict(call.initial_metadata())["x-quarry-upload"] == response.upload.name
        names.append(response.upload.name)
    parent = names[0].split("/uploads/")[0] + "/datasets/bare"
    committed = datasets.CommitVersion(ds.CommitVersionRequest(parent=parent, uploads=names, message="bare"),
                                       metadata=meta, timeout=30).version
    assert committed.name == parent + "/versions/" + committed.uid, committed.name
    states = []
    for message in datasets.WatchVersion(ds.WatchVersionRequest(name=committed.name), metadata=meta, timeout=60):
        assert message.version.name == committed.name, message.version.name
        states.append(version_pb2.VersionState.Name(message.version.state))
    assert states[0] == "VERSION_STATE_PENDING" and states[-1] == "VERSION_STATE_READY", states
    by_number = datasets.GetVersion(ds.GetVersionRequest(name=parent + "/versions/1"), metadata=meta, timeout=10)
    assert by_number.version.name == committed.name and by_number.version.file_count == 2, by_number
    print("READY", committed.name, " ".join(states))
""")


def generate_bare_client(out: Path) -> None:
    """Compile proto/ with protoc alone, into a directory of nothing but generated code."""
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto/quarry/v1").glob("*.proto"))
    args = ["protoc", f"-I{ROOT / 'proto'}", f"-I{Path(protoc.__file__).parent / '_proto'}",
            f"--python_out={out}", f"--grpc_python_out={out}", *protos]
    assert protoc.main(args) == 0


def run_bare(script: str, address: str, tmp_path: Path, *args: str) -> str:
    """Run `script` against the server with stubs generated into tmp_path and no project code importable."""
    generate_bare_client(tmp_path)
    (tmp_path / "client.py").write_text(script)
    # -S: no site processing, so the editable installs of this project are invisible; only the
    # third-party packages (grpc, protobuf, grpc_health) are reachable through PYTHONPATH.
    site_packages = sysconfig.get_paths()["purelib"]
    result = subprocess.run([sys.executable, "-S", str(tmp_path / "client.py"), address, str(tmp_path), *args],
                            env={"PYTHONPATH": f"{tmp_path}:{site_packages}"}, cwd=tmp_path,
                            capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_bare_generated_client_gets_serving_and_capabilities(server_file: ServerHandle, tmp_path: Path) -> None:
    assert run_bare(CLIENT, server_file.address, tmp_path).startswith("OK ")


def test_bare_generated_client_commits_a_version_and_follows_it_to_ready(
        server_file: ServerHandle, worker_file: QuarryProcess, tmp_path: Path) -> None:
    output = run_bare(COMMIT, server_file.address, tmp_path, server_operator(server_file.address))
    assert output.startswith("READY namespaces/") and output.rstrip().endswith("VERSION_STATE_READY"), output
