"""Latency of writing then reading a 1 KiB file: inline (WriteFile, kept in Postgres) vs the object store.

    python -m bench.inline_latency [--runs 30] [--store file|s3]

Starts Postgres, Redis, a server and a worker (bench/stack.py: the server requires a token; the stack's operator
token acts in its `bench` namespace), then through the SDK, alternating the two so both see the same machine state:
- inline: `client.write_text(...)` (returns with the version READY), then `client.open(...).read()`;
- object store: `client.upload_file(..., wait=True)` (upload, validation and promotion by the worker, returns
  once the version is READY), then the same read.
Prints the median, min-max and p95 of the write, the read and both, in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import quarry  # noqa: E402

from bench.stack import ROOT, quarry_stack  # noqa: E402

SIZE = 1024


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (f"median {statistics.median(values) * 1e3:7.1f}  min-max {ordered[0] * 1e3:6.1f}-{ordered[-1] * 1e3:<7.1f}"
            f"  p95 {p95 * 1e3:7.1f}")


def run(args: argparse.Namespace) -> None:
    with quarry_stack(args.store) as stack, \
            tempfile.TemporaryDirectory(prefix="quarry-inline-") as tmp:
        worker = subprocess.Popen([sys.executable, "-m", "workers"], env=stack.env, cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            client = quarry.Client(stack.address, namespace=stack.namespace, token=stack.token,
                                   cache_dir=Path(tmp) / "cache")
            client.create_dataset("latency")
            times: dict[str, dict[str, list[float]]] = {k: {"write": [], "read": [], "both": []}
                                                        for k in ("inline", "object store")}
            for index in range(args.runs + 1):  # the first round warms up connections and caches
                content = os.urandom(SIZE // 2).hex()  # 1 KiB of text, new each time
                for kind in (("inline", "object store") if index % 2 else ("object store", "inline")):
                    path = f"{kind.replace(' ', '-')}-{index}.txt"
                    start = time.perf_counter()
                    if kind == "inline":
                        version = client.write_text("latency", path, content).name
                    else:
                        local = Path(tmp) / path
                        local.write_text(content)
                        version = client.upload_file(local, "latency", path, wait=True).upload.version
                    written = time.perf_counter()
                    data = client.open("latency", path, version=version).read()
                    done = time.perf_counter()
                    assert data == content.encode()
                    if index:
                        times[kind]["write"].append(written - start)
                        times[kind]["read"].append(done - written)
                        times[kind]["both"].append(done - start)
            client.close()
        finally:
            worker.terminate()
            worker.wait(30)
        print(f"1 KiB file, {args.runs} runs each, store {args.store} (ms):")
        for kind, measured in times.items():
            for what in ("write", "read", "both"):
                print(f"  {kind:12} {what:5}  {_ms(measured[what])}")
        ratio = statistics.median(times["object store"]["both"]) / statistics.median(times["inline"]["both"])
        print(f"  write+read: inline is {ratio:.1f}x faster (medians)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--store", choices=("file", "s3"), default="file")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
