"""The SDK's pure parts, without a server: error classes, retry policy, part plans, names, resume state."""

from __future__ import annotations

import random
from pathlib import Path

import grpc
import pytest
import quarry
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from quarry._exceptions import error_for, from_grpc
from quarry._plan import plan_ranges
from quarry._resume import FileIdentity, ResumeState, ResumeStore
from quarry._retry import Budget

MiB = 1 << 20


class FakeRpcError(grpc.RpcError):
    """A failed call as grpc raises it: code, details, trailers (we cannot make a server send garbage)."""

    def __init__(self, code: grpc.StatusCode, details: str = "", trailers: tuple = ()) -> None:  # type: ignore[type-arg]
        self._code, self._details, self._trailers = code, details, trailers

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple:  # type: ignore[type-arg]
        return self._trailers


def status_trailer(code: grpc.StatusCode, reason: str = "", metadata: dict[str, str] | None = None,
                   retry_after: float | None = None, fields: tuple[str, ...] = (),
                   domain: str = "quarry.dev") -> tuple:  # type: ignore[type-arg]
    details = []
    if reason:
        info = error_details_pb2.ErrorInfo(reason=reason, domain=domain, metadata=metadata or {})
        details.append(info)
    if retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(retry_after * 1e9))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    if fields:
        details.append(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=f, description="bad") for f in fields]))
    status = status_pb2.Status(code=code.value[0], message="m")
    for detail in details:
        status.details.add().Pack(detail)
    return (("grpc-status-details-bin", status.SerializeToString()),)


@pytest.mark.parametrize(("code", "reason", "kind"), [
    (grpc.StatusCode.NOT_FOUND, "NOT_FOUND", quarry.NotFound),
    (grpc.StatusCode.NOT_FOUND, "UPLOAD_NOT_FOUND", quarry.NotFound),
    (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_NAME", quarry.InvalidArgument),
    (grpc.StatusCode.ALREADY_EXISTS, "ALREADY_EXISTS", quarry.AlreadyExists),
    (grpc.StatusCode.PERMISSION_DENIED, "NAMESPACE_MISMATCH", quarry.PermissionDenied),
    (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING", quarry.Unauthenticated),  # a PermissionDenied too
    (grpc.StatusCode.FAILED_PRECONDITION, "WRONG_OFFSET", quarry.WrongOffset),
    (grpc.StatusCode.FAILED_PRECONDITION, "UPLOAD_CANCELLED", quarry.WrongState),
    (grpc.StatusCode.FAILED_PRECONDITION, "WRONG_STATE", quarry.WrongState),
    (grpc.StatusCode.FAILED_PRECONDITION, "BASE_MOVED", quarry.BaseMoved),
    (grpc.StatusCode.FAILED_PRECONDITION, "SIZE_SHORT", quarry.FailedPrecondition),
    (grpc.StatusCode.DATA_LOSS, "CHECKSUM_MISMATCH", quarry.ChecksumMismatch),
    (grpc.StatusCode.DATA_LOSS, "", quarry.DataLoss),
    (grpc.StatusCode.OUT_OF_RANGE, "SIZE_EXCEEDED", quarry.OutOfRange),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_OPEN_UPLOADS", quarry.ResourceExhausted),
    (grpc.StatusCode.ABORTED, "CONCURRENT_CHANGE", quarry.Aborted),
    (grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE", quarry.Unavailable),
    (grpc.StatusCode.UNAVAILABLE, "", quarry.ConnectError),
    (grpc.StatusCode.UNIMPLEMENTED, "NOT_IMPLEMENTED", quarry.Unimplemented),
    (grpc.StatusCode.UNIMPLEMENTED, "", quarry.Unimplemented),
    (grpc.StatusCode.DEADLINE_EXCEEDED, "", quarry.DeadlineExceeded),
    (grpc.StatusCode.CANCELLED, "", quarry.Cancelled),
    (grpc.StatusCode.INTERNAL, "INTERNAL", quarry.Internal),
    (grpc.StatusCode.UNKNOWN, "", quarry.Internal),
    # A reason known for another code does not change the code's class.
    (grpc.StatusCode.NOT_FOUND, "WRONG_OFFSET", quarry.NotFound),
])
def test_class_is_chosen_by_code_and_reason(code: grpc.StatusCode, reason: str, kind: type) -> None:
    assert error_for(code, reason) is kind
    error = from_grpc(FakeRpcError(code, "any message at all", status_trailer(code, reason)))
    assert type(error) is kind and isinstance(error, quarry.RpcError) and isinstance(error, quarry.QuarryError)
    assert error.code is code and error.reason == reason and error.message == "any message at all"
    assert str(error) == f"{code.name}: any message at all"


def test_message_text_never_picks_the_class() -> None:
    misleading = FakeRpcError(grpc.StatusCode.NOT_FOUND, "WRONG_OFFSET checksum mismatch unavailable")
    assert type(from_grpc(misleading)) is quarry.NotFound


def test_details_are_parsed() -> None:
    code = grpc.StatusCode.FAILED_PRECONDITION
    error = from_grpc(FakeRpcError(code, "m", status_trailer(code, "WRONG_OFFSET", {"expected_offset": "1234"})))
    assert isinstance(error, quarry.WrongOffset) and error.expected_offset == 1234
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    bad = from_grpc(FakeRpcError(invalid, "m", status_trailer(invalid, "INVALID_PATH", fields=("upload.path",))))
    assert [v.field for v in bad.violations] == ["upload.path"]
    busy = from_grpc(FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "m",
                                  status_trailer(grpc.StatusCode.RESOURCE_EXHAUSTED, "X", retry_after=2.5)))
    assert busy.retry_delay == 2.5


def test_an_error_info_of_another_domain_names_no_reason() -> None:
    # A proxy in the path may add its own ErrorInfo: only Quarry's domain (AIP-193) names a Quarry reason.
    code = grpc.StatusCode.FAILED_PRECONDITION
    foreign = from_grpc(FakeRpcError(code, "m", status_trailer(code, "WRONG_OFFSET", domain="proxy.example")))
    assert type(foreign) is quarry.FailedPrecondition and foreign.reason == ""
    ours = from_grpc(FakeRpcError(code, "m", status_trailer(code, "WRONG_OFFSET", domain=quarry.ERROR_DOMAIN)))
    assert type(ours) is quarry.WrongOffset


def test_garbage_details_keep_the_status() -> None:
    error = from_grpc(FakeRpcError(grpc.StatusCode.NOT_FOUND, "", (("grpc-status-details-bin", b"\xff\x00garbage"),)))
    assert type(error) is quarry.NotFound and error.message == "not found"


def test_local_errors_sit_in_the_tree() -> None:
    assert issubclass(quarry.UsageError, ValueError) and issubclass(quarry.UsageError, quarry.QuarryError)
    assert issubclass(quarry.MissingDependency, ImportError)
    for kind in (quarry.IntegrityError, quarry.UploadFailed, quarry.MissingDependency, quarry.RpcError):
        assert issubclass(kind, quarry.QuarryError)
    assert issubclass(quarry.ConnectError, quarry.Unavailable)


def rpc_error(code: grpc.StatusCode, retry_after: float | None = None) -> quarry.RpcError:
    return error_for(code)(code, "m", reason="R", retry_delay=retry_after)


@pytest.mark.parametrize(("code", "retry_after", "retryable"), [
    (grpc.StatusCode.UNAVAILABLE, None, True),
    (grpc.StatusCode.ABORTED, None, True),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, 1.0, True),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, None, False),
    (grpc.StatusCode.DEADLINE_EXCEEDED, None, False),
    (grpc.StatusCode.INTERNAL, None, False),
    (grpc.StatusCode.NOT_FOUND, None, False),
    (grpc.StatusCode.INVALID_ARGUMENT, None, False),
    (grpc.StatusCode.FAILED_PRECONDITION, None, False),
])
def test_which_codes_retry(code: grpc.StatusCode, retry_after: float | None, retryable: bool) -> None:
    policy = quarry.RetryPolicy()
    assert policy.is_retryable(rpc_error(code, retry_after)) is retryable
    assert (policy.next_delay(1, rpc_error(code, retry_after), 0.0) is not None) is retryable


def test_backoff_grows_to_its_cap_with_jitter_below_it() -> None:
    policy = quarry.RetryPolicy(initial_backoff=0.1, multiplier=2, max_backoff=1.0, rng=random.Random(7))
    assert [policy.backoff(n) for n in range(1, 7)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    error = rpc_error(grpc.StatusCode.UNAVAILABLE)
    for attempt in range(1, 8):
        delays = [policy.delay(attempt, error) for _ in range(200)]
        assert all(0 <= d <= policy.backoff(attempt) for d in delays)
        assert max(delays) - min(delays) > policy.backoff(attempt) / 2  # jittered, not in step


def test_retry_info_is_a_floor_and_budgets_end_retries() -> None:
    policy = quarry.RetryPolicy(initial_backoff=0.01, max_attempts=3, max_total=10)
    busy = rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, retry_after=2.0)
    assert 2.0 <= policy.delay(1, busy) <= 2.01
    assert policy.next_delay(2, busy, 0) is not None
    assert policy.next_delay(3, busy, 0) is None  # out of attempts
    assert policy.next_delay(1, rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, retry_after=60), 0) is None
    assert policy.next_delay(1, rpc_error(grpc.StatusCode.UNAVAILABLE), 10.0) is None  # out of time
    assert quarry.RetryPolicy.never().next_delay(1, rpc_error(grpc.StatusCode.UNAVAILABLE), 0) is None


class Clock:
    """Time that passes only when the retry loop would sleep."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_default_budget_is_time_not_attempts() -> None:
    clock = Clock()
    policy = quarry.RetryPolicy(rng=random.Random(3))
    budget = Budget(policy, clock=clock)
    down = rpc_error(grpc.StatusCode.UNAVAILABLE)
    delays = []
    while (delay := budget.delay_after(down)) is not None:
        assert 0 <= delay <= policy.max_backoff
        delays.append(delay)
        clock.now += delay
    # A server down for a minute is retried for that minute: many more tries than the old five, ending with
    # the budget, neither before it nor after.
    assert len(delays) > 10 and clock.now == pytest.approx(policy.max_total)
    assert budget.delay_after(down) is None
    # A stream that moved forward starts a new budget; RetryInfo is honoured, and never past the budget.
    budget.progressed()
    assert budget.delay_after(rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, retry_after=7.0)) == 7.0
    clock.now += 55
    assert budget.delay_after(rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, retry_after=7.0)) is None
    assert Budget(quarry.RetryPolicy(max_attempts=2), clock=clock).delay_after(down) is not None
    counted = Budget(quarry.RetryPolicy(max_attempts=2), clock=clock)
    counted.delay_after(down)
    assert counted.delay_after(down) is None  # a count, when given, still ends the retries


def test_unary_calls_retry_only_when_safe() -> None:
    from types import SimpleNamespace

    from quarry._calls import Unary
    from quarry._config import Config
    from quarry._transport import SyncTransport

    transport = SyncTransport(Config.resolve("127.0.0.1:1", "x", "/tmp"), 1.0,
                              quarry.RetryPolicy(initial_backoff=0.001))
    calls: list[float | None] = []

    def flaky(request: object, timeout: float | None = None, metadata: object = None) -> str:
        calls.append(timeout)
        if len(calls) < 3:
            raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, "down")
        return "ok"

    transport._services["stand-in"] = SimpleNamespace(Flaky=flaky)  # a server that is down twice, then answers
    assert transport.call(Unary("stand-in", "Flaky", None)) == "ok" and calls == [1.0, 1.0, 1.0]
    calls.clear()
    with pytest.raises(quarry.ConnectError):  # translated, and not repeated
        transport.call(Unary("stand-in", "Flaky", None, idempotent=False))
    assert len(calls) == 1
    transport.close()


def test_plans_cover_missing_parts_once() -> None:
    part = 10
    assert plan_ranges(0, part, [], 4)[0].size == 0 and plan_ranges(0, part, [], 4)[0].last
    ranges = plan_ranges(75, part, [], 4)  # 8 parts
    assert [(r.start, r.stop) for r in ranges] == [(0, 20), (20, 40), (40, 60), (60, 75)]
    assert [r.last for r in ranges] == [False, False, False, True]
    resumed = plan_ranges(75, part, [1, 3, 5, 6], 2)  # parts 2, 4, 7, 8 are missing
    assert [(r.start, r.stop, r.first_part) for r in resumed] == [(10, 20, 2), (30, 40, 4), (60, 75, 7)]
    assert len(plan_ranges(75, part, [1, 3, 5, 6], 4)) == 4  # more streams: the last run is cut in two
    assert plan_ranges(75, part, range(1, 9), 4) == []
    for seed in range(50):
        rng = random.Random(seed)
        size, streams = rng.randrange(1, 500), rng.randrange(1, 6)
        done = {n for n in range(1, size // part + 2) if rng.random() < 0.3}
        covered = []
        for span in plan_ranges(size, part, done, streams):
            assert span.start % part == 0 and span.first_part == span.start // part + 1
            covered += range(span.start, span.stop)
        expected = [b for b in range(size) if b // part + 1 not in done]
        assert covered == expected


def test_names_and_refs() -> None:
    assert quarry.parse_ref("sales") == quarry.DatasetRef("sales", "latest")
    assert quarry.parse_ref("sales@3").name("team") == "namespaces/team/datasets/sales/versions/3"
    for bad in ("", "@3", "sales@", "a/b@1"):
        with pytest.raises(quarry.UsageError):
            quarry.parse_ref(bad)
    from quarry._names import upload_name

    assert upload_name("ns", "abc") == "namespaces/ns/uploads/abc"
    assert upload_name("ns", "namespaces/o/uploads/abc") == "namespaces/o/uploads/abc"


def test_config_reads_the_environment_and_checks_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from quarry._config import Config, cache_dir

    monkeypatch.setenv("QUARRY_ADDRESS", "example:1234")
    monkeypatch.setenv("QUARRY_NAMESPACE", "team")
    monkeypatch.setenv("QUARRY_CACHE_DIR", str(tmp_path))
    config = Config.resolve()
    assert (config.address, config.namespace, config.cache_dir) == ("example:1234", "team", tmp_path)
    assert Config.resolve("other:1", "x").address == "other:1"
    monkeypatch.delenv("QUARRY_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "quarry"
    with pytest.raises(quarry.UsageError, match="QUARRY_NAMESPACE"):
        Config.resolve(namespace="Not Valid")
    with pytest.raises(quarry.UsageError, match="QUARRY_ADDRESS"):
        Config.resolve(address="no-port")


def test_resume_state_is_keyed_by_identity_and_target(tmp_path: Path) -> None:
    store = ResumeStore(tmp_path)
    source = tmp_path / "f.bin"
    source.write_bytes(b"x" * 10)
    identity = FileIdentity.of(source)
    key = store.key(identity, "ns", "d", "f.bin")
    others = [store.key(identity, "ns", "d", "g.bin"), store.key(identity, "ns2", "d", "f.bin"),
              store.key(identity, "ns", "e", "f.bin")]
    assert len({key, *others}) == 4
    store.save(key, ResumeState(sha256="a" * 64, upload="namespaces/ns/uploads/u"))
    assert store.load(key).upload == "namespaces/ns/uploads/u"  # type: ignore[union-attr]
    source.write_bytes(b"y" * 11)
    assert FileIdentity.of(source) != identity  # a changed file is a new identity, hence a new upload
    saved = store.directory / f"{key}.json"
    saved.write_text("{not json")
    assert store.load(key) is None
    store.save(key, ResumeState(sha256="b" * 64, upload="namespaces/ns/uploads/v"))
    assert store.load(key).upload == "namespaces/ns/uploads/v"  # type: ignore[union-attr]
    store.delete(key)
    assert not saved.exists() and store.load(key) is None


def test_the_sdk_never_imports_server_code() -> None:
    import ast

    from tests.support import ROOT

    package = ROOT / "clients" / "python" / "src" / "quarry"
    for source in package.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert name.split(".")[0] not in ("server", "workers"), f"{source} imports {name}"


def test_chunks_carry_a_crc32c_only_when_a_fast_one_is_installed() -> None:
    from quarry._checksums import crc32c_function
    from quarry._uploads import chunk_message

    fast = crc32c_function()
    assert fast is not None  # google-crc32c is in the dev environment (the clean-venv test covers its absence)
    assert chunk_message(b"123456789", fast).chunk.crc32c == 0xE3069283  # the CRC32C check value
    assert not chunk_message(b"123456789", None).chunk.HasField("crc32c")
