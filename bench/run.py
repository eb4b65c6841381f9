"""`make bench`: every path of issue 13 against its ceiling, in one run, in interleaved turns, as one table.

    python -m bench.run [--turns 5] [--size 1GiB] [--s3-size 512MiB] [--only up,down,unary,s3]
                        [--profile PATH [--profile-out FILE]] [--json FILE] [--default-allocator]

Starts Postgres, Redis and moto once, a Quarry server on the local store and one on S3 (moto), the bare
grpc.aio servers of bench/ceilings.py, and makes a READY version holding one file of `--size` (with a worker,
stopped before anything is measured). Then, turn after turn, each group of paths runs back to back, its order
reversed every other turn, each run in a fresh client process (bench/clients.py):

    upload  the bare sink (the transport's ceiling), a bare server that writes (O_DIRECT) and fdatasyncs, the
            raw client to Quarry's Upload (1 and 4 streams), the SDK's upload_file (1 and 4 streams; the
            server's peak RSS is taken over the 4-stream run)
    down    the bare server-streaming ceiling, ReadFile with the raw client, the bare read with what a verified
            durable download cannot skip (sha256, O_DIRECT write, fsync), the SDK's download to a file
    unary   the bare unary ceiling and GetDataset with a reader token, 64 concurrent callers each
    s3      aioboto3 multipart straight to moto, the SDK's upload_file with 4 streams through Quarry on S3

The clients and the bare servers allocate memory as the `quarry` command does (glibc's thresholds fixed by
`quarry.tune_allocator`, through the environment); Quarry's server keeps glibc's defaults.
`--default-allocator` runs the clients and the bare servers on glibc's defaults too.

A path's figure is the median of its turns, with their min-max; a ratio is given both as the ratio of the
medians and as the median (min-max) of the ratios taken turn by turn (the two runs of a turn are seconds apart,
so a noisy machine moves both alike). The load average is sampled before every turn and at the end.

`--profile PATH` samples the Quarry server with py-spy (`py-spy record --format raw`) during every run of
PATH (e.g. `up.sdk1`) and prints the frames that cost most (bench/profile.py); needs `pip install py-spy` and
the right to trace the server (root, or ptrace_scope 0).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import quarry
from quarry._allocator import MMAP_THRESHOLD_BYTES, TRIM_THRESHOLD_BYTES

from bench import ceilings, clients
from bench.profile import summary
from bench.sizes import GiB, MiB, parse_size
from bench.stack import (
    BUCKET,
    ROOT,
    Services,
    bootstrap,
    cpu_seconds,
    current_rss,
    peak_rss,
    process,
    reset_peak,
    services,
    start_server,
)
from server.listen_ports import free_port

OUT = ROOT / "bench" / "out"
# The clients and the bare servers allocate as the quarry command does (quarry.tune_allocator), through glibc's
# environment: with glibc's default, adaptive thresholds each 1 MiB message was mapped afresh, and the bare read
# client ran at half its speed (a slow ceiling flatters). Quarry's server keeps the defaults (its memory bound).
ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD_BYTES),
                 "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD_BYTES)}
S3_PART = 8 * MiB  # about what Quarry's S3 store sends (its ~8 MiB sub-parts)


def source_file(size: int) -> Path:
    """A file of random bytes of `size`, kept under bench/out/ between runs."""
    OUT.mkdir(exist_ok=True)
    path = OUT / f"source-{size}.bin"
    if not path.exists() or path.stat().st_size != size:
        with open(path, "wb") as out:
            remaining = size
            while remaining:
                block = os.urandom(min(remaining, 64 * MiB))
                out.write(block)
                remaining -= len(block)
    return path


@dataclass(frozen=True)
class PathSpec:
    """One measured path: what it is, what it is compared with, and the issue's target."""

    name: str
    group: str
    label: str
    base: str | None = None
    target: float | None = None
    unary: bool = False
    server: str = "file"  # whose CPU time is counted: "bare" (bench/ceilings.py), "file", "s3", or "" (none of ours)


PATHS = [
    PathSpec("up.ceiling", "up", "bare grpc.aio client-streaming, server discards (1 MiB prebuilt)", server="bare"),
    PathSpec("up.write", "up", "bare grpc.aio server, O_DIRECT writes of 8 MiB, one fdatasync", "up.ceiling",
             server="bare"),
    PathSpec("up.raw", "up", "raw client -> Quarry Upload, 1 MiB chunks, 1 stream", "up.ceiling", 0.8),
    PathSpec("up.raw4", "up", "raw client -> Quarry Upload, 1 MiB chunks, 4 streams", "up.ceiling"),
    PathSpec("up.sdk1", "up", "SDK upload_file, 1 stream", "up.ceiling", 0.7),
    PathSpec("up.sdk4", "up", "SDK upload_file, 4 streams", "up.ceiling", 0.7),
    PathSpec("down.ceiling", "down", "bare grpc.aio server-streaming, 1 MiB messages from memory", server="bare"),
    PathSpec("down.raw", "down", "ReadFile, raw client", "down.ceiling", 0.7),
    PathSpec("down.durable", "down", "bare read + sha256 + O_DIRECT write + fsync (the least a verified durable "
             "download costs)", "down.ceiling", server="bare"),
    PathSpec("down.sdk", "down", "SDK download of the file (written, sha256-checked, fsynced)", "down.ceiling", 0.6),
    PathSpec("unary.ceiling", "unary", "bare grpc.aio unary, 64 concurrent callers", unary=True, server="bare"),
    PathSpec("unary.get", "unary", "GetDataset with a token, 64 concurrent callers", "unary.ceiling", 0.6, True),
    PathSpec("s3.direct", "s3", "aioboto3 multipart straight to moto, 4 parts in flight", server=""),
    PathSpec("s3.sdk4", "s3", "SDK upload_file through Quarry on S3 (moto), 4 streams", "s3.direct", 0.95,
             server="s3"),
]
BY_NAME = {spec.name: spec for spec in PATHS}
RSS_PATHS = ("up.sdk4", "s3.sdk4")
# The durable references: what the disk (and, downloading, sha256) leave possible, whatever the transport does.
DURABLE_BASES = {"up.raw": "up.write", "up.raw4": "up.write", "up.sdk1": "up.write", "up.sdk4": "up.write",
                 "down.sdk": "down.durable"}
RSS_LIMIT = 300 * MiB


@dataclass
class Bench:
    """The running parts and what a run of each path needs."""

    services: Services
    work: Path
    size: int
    s3_size: int
    file: Path
    s3_file: Path
    token: str
    reader: str
    ceilings: str
    ceilings_pid: int
    server: str
    server_pid: int
    s3_server: str | None
    s3_server_pid: int | None
    version: str
    profile: str | None = None
    profile_out: Path | None = None
    allocator: dict[str, str] = field(default_factory=dict)  # ALLOCATOR_ENV, or nothing with --default-allocator
    counter: int = 0
    profiles: int = 0
    profiling: bool = False

    def client(self, kind: str, **args: Any) -> dict[str, Any]:
        """One run of a client process; its JSON answer."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUARRY_")}
        env["QUARRY_CREDENTIALS"] = str(self.work / "no-credentials")
        env.update(self.allocator)
        command = [sys.executable, "-m", "bench.clients", kind, json.dumps(args)]
        if self.profiling:
            command = [*self._spy("--subprocesses", "--output", str(self._profile_file("client")), "--"), *command]
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
        if done.returncode != 0:
            raise RuntimeError(f"bench client {kind} failed:\n{done.stderr[-4000:]}")
        answer: dict[str, Any] = json.loads(next(line for line in reversed(done.stdout.splitlines())
                                                 if line.startswith("{")))
        return answer

    def _common(self, address: str, namespace: str = "default") -> dict[str, Any]:
        return {"address": address, "namespace": namespace, "token": self.token}

    def _path(self) -> str:
        self.counter += 1
        return f"run-{self.counter}.bin"

    def run(self, name: str) -> dict[str, Any]:
        """Measure one path once, with the CPU time its server used meanwhile."""
        pid = {"bare": self.ceilings_pid, "file": self.server_pid, "s3": self.s3_server_pid}.get(BY_NAME[name].server)
        before = cpu_seconds(pid) if pid else 0.0
        with self._profiled(name):
            outcome = self._measure(name)
        if pid:
            outcome["server_cpu"] = cpu_seconds(pid) - before
        self._clean()
        return outcome

    def _measure(self, name: str) -> dict[str, Any]:
        file_server = self._common(self.server)
        sdk = dict(file_server, cache_dir=str(self.work / "sdk-cache"), dataset="up")
        upload = dict(file_server, address=self.ceilings, size=self.size, part_size=64 * MiB, dataset="up",
                      method=ceilings.SINK, bare=True, streams=1)
        read = dict(file_server, size=self.size, version=self.version, path="big.bin")
        if name == "up.ceiling":
            return self.client("upload", **upload)
        if name == "up.write":
            return self.client("upload", **dict(upload, method=ceilings.WRITE))
        if name in ("up.raw", "up.raw4"):
            return self.client("upload", **dict(upload, address=self.server, method=clients.UPLOAD, bare=False,
                                                path=self._path(), streams=4 if name == "up.raw4" else 1))
        if name in ("up.sdk1", "up.sdk4"):
            return self._rss(name, self.server_pid, lambda: self.client(
                "sdk-upload", **dict(sdk, file=str(self.file), path=self._path(), streams=int(name[-1]))))
        if name == "down.ceiling":
            return self.client("read", **dict(read, address=self.ceilings, method=ceilings.READ))
        if name == "down.raw":
            return self.client("read", **dict(read, method=clients.READ))
        if name == "down.durable":
            return self.client("durable-read", **dict(read, address=self.ceilings, method=ceilings.READ,
                                                      out=str(self.work / "durable.bin")))
        if name == "down.sdk":
            return self.client("sdk-download", **dict(sdk, dataset="read", path="big.bin", version="latest",
                                                      out=str(self.work / "download.bin")))
        if name in ("unary.ceiling", "unary.get"):
            bare = name == "unary.ceiling"
            return self.client("unary", **dict(file_server, address=self.ceilings if bare else self.server,
                                               token=self.reader, method=ceilings.GET if bare else clients.GET,
                                               callers=64,
                                               seconds=3.0, name="namespaces/default/datasets/read"))
        if name == "s3.direct":
            return self.client("s3-direct", endpoint=self.services.s3_endpoint, bucket=BUCKET, size=self.s3_size,
                               s3_part=S3_PART, in_flight=4, file=str(self.s3_file))
        if name == "s3.sdk4":
            assert self.s3_server is not None and self.s3_server_pid is not None
            s3 = dict(self._common(self.s3_server, "s3"), cache_dir=str(self.work / "sdk-cache"), dataset="s3",
                      file=str(self.s3_file), path=self._path(), streams=4)
            return self._rss(name, self.s3_server_pid, lambda: self.client("sdk-upload", **s3))
        raise KeyError(name)

    def _rss(self, name: str, pid: int, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """`run`, and for the paths whose memory counts the server's peak RSS over it and its RSS after."""
        if name not in RSS_PATHS:
            return run()
        reset_peak(pid)
        outcome = run()
        outcome["peak_rss"] = peak_rss(pid)
        outcome["rss_after"] = current_rss(pid)
        return outcome

    def _spy(self, *arguments: str) -> list[str]:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        return [spy, "record", "--format", "raw", "--rate", "200", "--nonblocking", *arguments]

    def _profile_file(self, side: str) -> Path:
        assert self.profile_out is not None
        return self.profile_out.with_name(f"{self.profile_out.name}.{self.profiles}.{side}.txt")

    @contextlib.contextmanager
    def _profiled(self, name: str) -> Iterator[None]:
        """py-spy on the server (and, through `client`, on the client) over a run of the profiled path."""
        if name != self.profile:
            yield
            return
        self.profiles += 1
        spy = subprocess.Popen(self._spy("--pid", str(self.server_pid), "--output", str(self._profile_file("server"))),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # py-spy attaches
        self.profiling = True
        try:
            yield
        finally:
            self.profiling = False
            spy.send_signal(signal.SIGINT)
            spy.wait(60)

    def _clean(self) -> None:
        """Drop what uploads staged: the next run writes to an emptier disk, moto's memory is given back."""
        shutil.rmtree(self.work / "objects" / "staging", ignore_errors=True)
        if self.services.s3_endpoint is not None:
            s3 = boto3.client("s3", endpoint_url=self.services.s3_endpoint, aws_access_key_id="bench",
                              aws_secret_access_key="bench", region_name="us-east-1")
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="staging/"):
                for entry in page.get("Contents", []):
                    s3.delete_object(Bucket=BUCKET, Key=entry["Key"])


def prepare(services_: Services, address: str, file: Path, s3: bool) -> tuple[str, str, str]:
    """Namespaces and datasets, a reader token, and a READY version holding `file` (a worker runs meanwhile):
    (operator token, reader token, the version's name)."""
    operator = bootstrap(services_.env)
    with quarry.Client(address, namespace="default", token=operator, cache_dir=services_.work / "prep",
                       timeout=300) as client:
        for dataset in ("up", "read"):
            client.create_dataset(dataset)
        if s3:
            client.create_namespace("s3")
        reader = client.create_token("bench-reader", {"default": "reader"}).secret
        env = services_.server_env("file", address)
        with process([sys.executable, "-m", "workers"], env, services_.work / "worker.log"):
            client.upload_file(file, "read", "big.bin", wait=True, wait_timeout=600)
        version = client.get_version("read", "latest").name
    if s3:
        with quarry.Client(address, namespace="s3", token=operator, cache_dir=services_.work / "prep") as client:
            client.create_dataset("s3")
    return operator, reader, version


@dataclass
class Figures:
    """Every run of every path, and the load averages seen."""

    runs: dict[str, list[dict[str, Any]]]
    loads: list[tuple[float, float, float]]


def measure(bench: Bench, groups: list[str], turns: int, log: Callable[[str], None],
            only: set[str] | None = None) -> Figures:
    """`turns` turns of every path of `groups` (or only those named in `only`), interleaved."""
    names = [spec.name for spec in PATHS if spec.group in groups and (not only or spec.name in only)]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    loads = []
    for turn in range(turns):
        loads.append(os.getloadavg())
        for group in groups:
            members = [name for name in names if BY_NAME[name].group == group]
            for name in members if turn % 2 == 0 else reversed(members):
                outcome = bench.run(name)
                runs[name].append(outcome)
                log(f"turn {turn + 1} {name:14} {_one(BY_NAME[name], outcome)}")
    loads.append(os.getloadavg())
    return Figures(runs, loads)


def _value(spec: PathSpec, outcome: dict[str, Any]) -> float:
    return float(outcome["rps"]) if spec.unary else outcome["bytes"] / outcome["seconds"] / 1e6


def _cpu(spec: PathSpec, outcome: dict[str, Any]) -> tuple[float, float]:
    """CPU of client and server per unit: seconds per GiB moved, or microseconds per call."""
    unit = outcome["calls"] / 1e6 if spec.unary else outcome["bytes"] / GiB
    return outcome.get("client_cpu", 0.0) / unit, outcome.get("server_cpu", 0.0) / unit


def _one(spec: PathSpec, outcome: dict[str, Any]) -> str:
    client, server = _cpu(spec, outcome)
    if spec.unary:
        return (f"{outcome['rps']:7.0f} rps  p50 {outcome['p50'] * 1e3:5.1f} ms  p99 {outcome['p99'] * 1e3:5.1f} ms  "
                f"CPU/call client {client:.0f} us, server {server:.0f} us")
    text = f"{_value(spec, outcome):7.0f} MB/s  CPU/GiB client {client:.2f} s, server {server:.2f} s"
    if "peak_rss" in outcome:
        text += f"  server RSS peak {outcome['peak_rss'] / MiB:.0f} MiB, after {outcome['rss_after'] / MiB:.0f} MiB"
    return text


def _spread(values: list[float], digits: int = 0) -> str:
    return (f"{statistics.median(values):,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"
            if values else "-")


def _durable_lines(figures: Figures) -> list[str]:
    """Each path that stores or verifies bytes against the cheapest bare program doing the same durable work."""
    lines = ["", "Against the cheapest bare program making the bytes as durable (and, downloading, verified):", "",
             "| path | against | ratio of medians | ratio per turn: median (min-max) |", "| --- | --- | --- | --- |"]
    for name, base in DURABLE_BASES.items():
        runs, base_runs = figures.runs.get(name), figures.runs.get(base)
        if not runs or not base_runs:
            continue
        values = [_value(BY_NAME[name], run) for run in runs]
        base_values = [_value(BY_NAME[base], run) for run in base_runs]
        turns = [a / b for a, b in zip(values, base_values, strict=False)]
        lines.append(f"| {name} | {base} | {statistics.median(values) / statistics.median(base_values):.2f} | "
                     f"{_spread(turns, 2)} |")
    return lines if len(lines) > 5 else []


def table(figures: Figures) -> list[str]:
    """The report: one line per path, its ratio to its ceiling (medians' and per turn) and the target."""
    lines = ["| path | figure: median (min-max) | against | ratio of medians | ratio per turn: median (min-max) "
             "| target |", "| --- | --- | --- | --- | --- | --- |"]
    for spec in PATHS:
        runs = figures.runs.get(spec.name)
        if not runs:
            continue
        values = [_value(spec, run) for run in runs]
        unit = "rps" if spec.unary else "MB/s"
        figure = f"{_spread(values)} {unit}"
        if spec.unary:
            p99 = [run["p99"] * 1e3 for run in runs]
            figure += f", p50 {_spread([run['p50'] * 1e3 for run in runs], 1)} ms, p99 {_spread(p99, 1)} ms"
        against = ratio = per_turn = target = ""
        base_runs = figures.runs.get(spec.base or "")
        if spec.base and base_runs:
            base = BY_NAME[spec.base]
            base_values = [_value(base, run) for run in base_runs]
            against = spec.base
            ratio = f"{statistics.median(values) / statistics.median(base_values):.2f}"
            turns = [a / b for a, b in zip(values, base_values, strict=False)]
            per_turn = _spread(turns, 2)
            if spec.target is not None:
                met = statistics.median(turns) >= spec.target
                target = f">= {spec.target:.2f} {'met' if met else 'NOT met'}"
            if spec.unary:
                p99s = [a["p99"] / b["p99"] for a, b in zip(runs, base_runs, strict=False)]
                per_turn += f"; p99 x{_spread(p99s, 2)}"
                met = statistics.median(p99s) <= 2.0
                target += f"; p99 <= 2x {'met' if met else 'NOT met'}"
        lines.append(f"| {spec.name}: {spec.label} | {figure} | {against} | {ratio} | {per_turn} | {target} |")
        if spec.name in RSS_PATHS:
            peaks = [run["peak_rss"] / MiB for run in runs if "peak_rss" in run]
            after = [run["rss_after"] / MiB for run in runs if "rss_after" in run]
            if peaks:
                met = max(peaks) * MiB < RSS_LIMIT
                lines.append(f"| server RSS over {spec.name}: peak (RSS after) | {_spread(peaks)} MiB "
                             f"({_spread(after)} MiB) | | | | peak < 300 MiB {'met' if met else 'NOT met'} (max) |")
    lines += _durable_lines(figures)
    lines += ["", "CPU time per GiB moved (per call for unary paths), client and server, median (min-max):", "",
              "| path | client | server |", "| --- | --- | --- |"]
    for spec in PATHS:
        runs = figures.runs.get(spec.name)
        if runs:
            cpus = [_cpu(spec, run) for run in runs]
            unit = " us" if spec.unary else " s"
            lines.append(f"| {spec.name} | {_spread([c for c, _ in cpus], 0 if spec.unary else 2)}{unit} | "
                         f"{_spread([s for _, s in cpus], 0 if spec.unary else 2) if spec.server else '-'}{unit} |")
    loads = ", ".join(f"{one:.2f}" for one, _, _ in figures.loads)
    lines.append(f"\nload average (1 min) before each turn and at the end: {loads}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--size", type=parse_size, default=GiB, help="bytes of the local-store file (1GiB)")
    parser.add_argument("--s3-size", type=parse_size, default=512 * MiB,
                        help="bytes uploaded to moto (at most 1GiB: moto holds objects in memory, ~5x)")
    parser.add_argument("--only", default="up,down,unary,s3", help="groups to run: up, down, unary, s3")
    parser.add_argument("--paths", default="", help="only these paths of those groups (e.g. up.ceiling,up.raw)")
    parser.add_argument("--profile", choices=[spec.name for spec in PATHS], help="py-spy the server over this path")
    parser.add_argument("--profile-out", type=Path, default=OUT / "profile")
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    parser.add_argument("--server-env", action="append", default=[], help="QUARRY_X=value for the servers")
    parser.add_argument("--default-allocator", action="store_true",
                        help="run the clients and the bare servers on glibc's default malloc thresholds (the "
                             "quarry command fixes them: quarry.tune_allocator)")
    args = parser.parse_args()
    groups = [group.strip() for group in args.only.split(",") if group.strip()]
    if args.s3_size > GiB:
        parser.error("--s3-size: at most 1GiB (moto keeps objects in memory)")
    extra = dict(item.split("=", 1) for item in args.server_env)
    args.profile_out.parent.mkdir(parents=True, exist_ok=True)
    for stale in args.profile_out.parent.glob(args.profile_out.name + ".*.txt"):
        stale.unlink()
    file = source_file(args.size)
    s3_file = source_file(args.s3_size) if "s3" in groups else file

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    log(f"bench: {args.turns} turns, {args.size / MiB:.0f} MiB local, {args.s3_size / MiB:.0f} MiB S3, "
        f"groups {groups}, load average {os.getloadavg()[0]:.2f}")
    with services(with_s3="s3" in groups) as svc, contextlib.ExitStack() as stack:
        bare = f"127.0.0.1:{free_port()}"
        (svc.work / "bare").mkdir()
        allocator = {} if args.default_allocator else ALLOCATOR_ENV
        ceilings_process = stack.enter_context(process(
            [sys.executable, "-m", "bench.ceilings", bare, str(svc.work / "bare")], {**svc.env, **allocator},
            svc.work / "bare.log"))
        address = f"127.0.0.1:{free_port()}"
        server = stack.enter_context(start_server(svc.server_env("file", address, extra), svc.work / "server.log"))
        s3_address = s3_pid = None
        if "s3" in groups:
            s3_address = f"127.0.0.1:{free_port()}"
            s3_pid = stack.enter_context(start_server(svc.server_env("s3", s3_address, extra),
                                                      svc.work / "s3-server.log")).pid
        operator, reader, version = prepare(svc, address, file, "s3" in groups)
        assert ceilings_process.poll() is None
        bench = Bench(svc, svc.work, args.size, args.s3_size, file, s3_file, operator, reader, bare,
                      ceilings_process.pid, address,
                      server.pid, s3_address, s3_pid, version, args.profile, args.profile_out, allocator)
        log(f"ready: server pid {server.pid}, version {version}")
        figures = measure(bench, groups, args.turns, log, {name for name in args.paths.split(",") if name})
    lines = table(figures)
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps({"runs": figures.runs, "loads": figures.loads}, indent=1))
    if args.profile:
        for out in sorted(args.profile_out.parent.glob(args.profile_out.name + ".*.txt")):
            print(f"\nprofile over {args.profile} ({out.name}):")
            print("\n".join(summary(out)))


if __name__ == "__main__":
    main()
