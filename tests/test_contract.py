"""The contract: buf lint, format and breaking are clean, every file carries Go and Java options, the
generated stubs are current, every RPC and error is mapped."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2

from server.api import errors as api_errors
from server.model import errors as domain_errors
from server.model.failures import Failure
from tests.support import ROOT

BUF = ROOT / "node_modules" / ".bin" / "buf"
BASELINE = ROOT / "proto-baseline.binpb"
GO_PACKAGE = "quarry.dev/gen/go/quarry/v1;quarryv1"
JAVA_PACKAGE = "dev.quarry.v1"


def buf(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run buf (from npm, as `make test` installs it)."""
    binary = str(BUF) if BUF.exists() else shutil.which("buf")
    assert binary, "buf is not installed: run `npm ci` (make test does)"
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_buf_lint_is_clean() -> None:
    result = buf("lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_format_is_clean() -> None:
    result = buf("format", "--diff", "--exit-code")
    assert result.returncode == 0, "run `buf format -w`:\n" + result.stdout + result.stderr


def test_no_breaking_change_against_the_baseline() -> None:
    # The baseline is the contract clients were built against (`make proto-baseline` takes a new one).
    result = buf("breaking", "--against", str(BASELINE))
    assert result.returncode == 0, result.stdout + result.stderr


# Each edit keeps a valid contract that old clients would misread; buf names what broke.
BREAKS = {
    "field renumbered": ("upload.proto", "string path = 4;", "string path = 40;",
                         'field "4" with name "path" on message "Upload" was deleted'),
    "field removed": ("upload.proto", "  string content_type = 7;\n", "",
                      'field "7" with name "content_type" on message "Upload" was deleted'),
    "field retyped": ("version.proto", "int64 number = 4;", "int32 number = 4;",
                      'changed type from "int64" to "int32"'),
    "rpc removed": ("upload_service.proto",
                    "  rpc CancelUpload(CancelUploadRequest) returns (CancelUploadResponse);\n", "",
                    'RPC "CancelUpload" on service "UploadService" was deleted'),
    "enum value renumbered": ("upload.proto", "UPLOAD_STATE_OPEN = 1;", "UPLOAD_STATE_OPEN = 9;",
                              'enum value "1" on enum "UploadState" was deleted'),
}


@pytest.mark.parametrize("kind", sorted(BREAKS))
def test_a_deliberate_break_fails_the_breaking_check(kind: str, tmp_path: Path) -> None:
    file, old, new, said = BREAKS[kind]
    shutil.copytree(ROOT / "proto", tmp_path / "proto")
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    target = tmp_path / "proto" / "quarry" / "v1" / file
    text = target.read_text()
    assert old in text, f"{file} no longer has {old!r}: pick another break"
    target.write_text(text.replace(old, new, 1))
    assert buf("build", cwd=tmp_path).returncode == 0  # still a valid contract, only an incompatible one
    result = buf("breaking", "--against", str(BASELINE), cwd=tmp_path)
    assert result.returncode != 0, f"{kind} passed buf breaking"
    assert said in result.stdout, result.stdout


def contract_files(tmp_path: Path) -> list[descriptor_pb2.FileDescriptorProto]:
    """The contract's files as `buf build` compiles them (a buf image is a FileDescriptorSet)."""
    image = tmp_path / "image.binpb"
    result = buf("build", "--exclude-source-info", "-o", str(image))
    assert result.returncode == 0, result.stderr
    files = descriptor_pb2.FileDescriptorSet.FromString(image.read_bytes()).file
    return [f for f in files if f.package.startswith("quarry.")]


def test_every_proto_file_has_go_and_java_options(tmp_path: Path) -> None:
    files = contract_files(tmp_path)
    assert len(files) == len(list((ROOT / "proto/quarry/v1").glob("*.proto")))
    # With java_multiple_files every message, enum and service is a class of the Java package: an outer
    # class of the same name would not compile.
    types = {t.name for f in files for t in [*f.message_type, *f.enum_type, *f.service]}
    outers = set()
    for file in files:
        options = file.options
        assert options.go_package == GO_PACKAGE, file.name
        import_path, _, go_name = options.go_package.partition(";")
        assert re.fullmatch(r"[a-z0-9.-]+(/[a-z0-9_.-]+)+", import_path) and go_name.isidentifier(), file.name
        assert options.java_package == JAVA_PACKAGE and options.java_multiple_files, file.name
        stem = Path(file.name).stem
        assert options.java_outer_classname == "".join(w.title() for w in stem.split("_")) + "Proto", file.name
        assert options.java_outer_classname not in types, f"{file.name}: outer class name taken by a type"
        outers.add(options.java_outer_classname)
    assert len(outers) == len(files)


def test_buf_config_keeps_default_rules() -> None:
    text = (ROOT / "buf.yaml").read_text()
    assert "STANDARD" in text and "COMMENTS" in text


def test_generated_stubs_are_current() -> None:
    result = subprocess.run([sys.executable, "scripts/generate_stubs.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_domain_error_has_a_status() -> None:
    kinds = [obj for obj in vars(domain_errors).values()
             if isinstance(obj, type) and issubclass(obj, domain_errors.QuarryError)]
    assert len(kinds) > 10
    for kind in kinds:
        error = _an_error_of(kind)
        code = api_errors.code_for(error)
        assert isinstance(code, grpc.StatusCode)
        if kind is not domain_errors.QuarryError and kind is not domain_errors.Internal:
            assert code is not grpc.StatusCode.INTERNAL, f"{kind.__name__} has no status of its own"
        assert error.reason.isupper() and " " not in error.reason


def test_an_error_without_a_default_reason_must_be_given_one() -> None:
    # A class whose raises all name their own reason has no default to fall back on: forgetting one is a bug
    # caught where the error is made, not a reason-less ErrorInfo.
    with pytest.raises(TypeError, match="NotFound has no default reason"):
        domain_errors.NotFound("x")
    assert domain_errors.NotFound("x", reason="UPLOAD_NOT_FOUND").reason == "UPLOAD_NOT_FOUND"
    assert domain_errors.InvalidArgument("x").reason == "INVALID_ARGUMENT"  # a class with a default


def _an_error_of(kind: type[domain_errors.QuarryError]) -> domain_errors.QuarryError:
    if kind is domain_errors.WrongOffset:
        return kind("x", expected_offset=0)  # type: ignore[call-arg]
    if kind is domain_errors.WrongState:
        return kind("x", state="OPEN", reason="UPLOAD_FINISHED")  # type: ignore[call-arg]
    if kind is domain_errors.QuotaExceeded:
        return kind("x", subject="namespaces/n", quota="max_bytes", limit=1)  # type: ignore[call-arg]
    return kind("x") if hasattr(kind, "reason") else kind("x", reason="SOME_REASON")


ERROR_CLASSES = [obj for obj in vars(domain_errors).values()
                 if isinstance(obj, type) and issubclass(obj, domain_errors.QuarryError)]


def test_every_error_kind_has_its_own_status() -> None:
    for kind in domain_errors.ErrorKind:
        code = api_errors.code_for_kind(kind)
        assert (code is grpc.StatusCode.INTERNAL) == (kind is domain_errors.ErrorKind.INTERNAL), kind


@pytest.mark.parametrize("error_class", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_a_stored_failure_keeps_the_status_of_its_error(error_class: type[domain_errors.QuarryError]) -> None:
    # A failure goes to Postgres as JSON and comes back for GetUpload/GetVersion: the same status either way.
    error = _an_error_of(error_class)
    stored = json.loads(json.dumps(Failure.of(error, "p.csv").to_json()))
    back = Failure.from_json(stored)
    assert back is not None and back.reason == error.reason and back.path == "p.csv"
    assert api_errors.code_for_kind(back.kind) is api_errors.code_for(error)
    assert stored["kind"] == error.kind.value


def test_unknown_exceptions_become_internal_without_detail() -> None:
    status = api_errors.status_for(RuntimeError("secret detail"))
    assert status.code is grpc.StatusCode.INTERNAL
    assert "secret" not in status.message


def test_generated_code_is_committed_not_ignored() -> None:
    generated = ROOT / "clients/python/src/quarry/v1"
    protos = sorted(p.stem for p in (ROOT / "proto/quarry/v1").glob("*.proto"))
    assert protos
    expected = [f"{stem}{suffix}" for stem in protos for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")]
    assert sorted(p.name for p in generated.glob("*_pb2*")) == sorted(expected)
    paths = [(generated / name).relative_to(ROOT).as_posix() for name in ["__init__.py", *expected]]
    # Tracked by git (fails naming the first untracked file), and no ignore rule would drop a regenerated one.
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", "--", *paths], cwd=ROOT, capture_output=True,
                             text=True, timeout=60)
    assert tracked.returncode == 0, tracked.stderr
    assert sorted(tracked.stdout.split()) == sorted(paths)
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "--", *paths], cwd=ROOT, capture_output=True,
                             text=True, timeout=60)
    assert ignored.returncode == 1 and not ignored.stdout, ignored.stdout + ignored.stderr


def contract_services() -> list[Any]:
    """Every service descriptor in proto/quarry/v1."""
    import importlib

    modules = [importlib.import_module(f"quarry.v1.{p.stem}_pb2")
               for p in sorted((ROOT / "proto/quarry/v1").glob("*.proto"))]
    return [service for module in modules for service in module.DESCRIPTOR.services_by_name.values()]


def test_every_rpc_in_the_contract_has_a_handler() -> None:
    from server.api.capabilities import CapabilitiesServicer
    from server.api.identity import AuditServicer, NamespaceServicer, TokenServicer
    from server.api.servicers import DatasetServicer
    from server.api.uploads import UploadServicer

    servicers = {"DatasetService": DatasetServicer, "UploadService": UploadServicer,
                 "CapabilitiesService": CapabilitiesServicer, "TokenService": TokenServicer,
                 "NamespaceService": NamespaceServicer, "AuditService": AuditServicer}
    services = contract_services()
    assert sorted(s.name for s in services) == sorted(servicers)
    for service in services:
        servicer = servicers[service.name]
        for method in service.methods:
            defined_in = next(k for k in servicer.__mro__ if method.name in vars(k))
            assert defined_in.__module__.startswith("server."), f"{service.name}.{method.name} has no handler"


def test_every_rpc_the_server_serves_has_an_access_rule() -> None:
    # The one table of who may call what covers the contract, health and reflection; nothing else is in it.
    from grpc_health.v1 import health_pb2
    from grpc_reflection.v1alpha import reflection_pb2

    from server.api.flight import FLIGHT_METHODS, method_name
    from server.domain.access import RPC_RULES

    served = [*contract_services(), health_pb2.DESCRIPTOR.services_by_name["Health"],
              reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"]]
    methods = {f"/{service.full_name}/{method.name}" for service in served for method in service.methods}
    flight = {method_name(m) for m in FLIGHT_METHODS}  # the Arrow Flight endpoint's, every one pyarrow routes
    assert methods | flight == set(RPC_RULES)


def test_every_reason_with_a_status_of_its_own_is_named_in_the_contract() -> None:
    # What a generated client needs to know about identity errors is in the proto comments it gets.
    text = "\n".join(p.read_text() for p in (ROOT / "proto/quarry/v1").glob("*.proto"))
    for reason in ("TOKEN_MISSING", "TOKEN_INVALID", "TOKEN_EXPIRED", "TOKEN_REVOKED", "ROLE_REQUIRED",
                   "NAMESPACE_NOT_GRANTED", "RATE_LIMITED", "QUOTA_EXCEEDED", "TOO_MANY_OPEN_UPLOADS"):
        assert reason in text, reason
    # Every service's own comment documents the authorization metadata a call must carry.
    services = re.findall(r"((?:^//[^\n]*\n)+)service (\w+) \{", text, flags=re.MULTILINE)
    assert sorted(name for _, name in services) == sorted(s.name for s in contract_services())
    for comment, name in services:
        assert "`authorization: Bearer <token>`" in comment, name


def test_a_status_quoting_a_huge_input_still_fits_the_clients_metadata_limit() -> None:
    # grpc clients refuse trailers over 8 KiB; grpc-message percent-encodes non-ASCII bytes (three per byte).
    error = domain_errors.InvalidArgument.field("name", "ü" * 5000 + " is not a name")
    error.metadata = {"namespace": "é" * 5000}
    status = api_errors.status_for(error)
    assert len(status.message.encode()) <= 1000 and len(status.details) < 3000
    encoded = sum(3 if b > 126 or b < 32 else 1 for b in status.message.encode())
    assert encoded + len(status.details) * 4 // 3 < 8192


# Call metadata a client must know, and the services whose calls carry it (request) or answer it (response).
# A key the server reads or sends that is missing here fails the first test; each key must be documented in
# the comment of every service listed.
METADATA = {
    "authorization": {"DatasetService", "UploadService", "TokenService", "NamespaceService", "AuditService"},
    "x-quarry-namespace": {"DatasetService", "UploadService", "TokenService", "NamespaceService", "AuditService"},
    "x-quarry-upload": {"UploadService"},
}
METADATA_KEY = re.compile(r"authorization|x-quarry-[a-z0-9-]+")


def service_comments(tmp_path: Path) -> dict[str, str]:
    """Each service's comment, as every generated client gets it (buf build with source info)."""
    image = tmp_path / "services.binpb"
    result = buf("build", "-o", str(image))
    assert result.returncode == 0, result.stderr
    comments = {}
    for file in descriptor_pb2.FileDescriptorSet.FromString(image.read_bytes()).file:
        located = {tuple(loc.path): loc.leading_comments for loc in file.source_code_info.location}
        for index, service in enumerate(file.service):
            comments[service.name] = located.get((6, index), "")  # FileDescriptorProto.service
    return comments


def test_every_metadata_key_of_the_server_is_listed() -> None:
    used = set()
    for path in sorted((ROOT / "server").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and METADATA_KEY.fullmatch(node.value):
                used.add(node.value)
    assert used == set(METADATA), "list (and document) the server's call metadata keys in METADATA"


def test_every_metadata_key_is_documented_on_the_services_that_use_it(tmp_path: Path) -> None:
    comments = service_comments(tmp_path)
    missing = [f"{service}: `{key}`" for key, services in METADATA.items() for service in sorted(services)
               if f"`{key}" not in comments.get(service, "")]
    assert missing == [], "undocumented call metadata:\n" + "\n".join(missing)
