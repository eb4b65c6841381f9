"""What tokens cost: GetDataset throughput with 64 concurrent callers, tokens on vs QUARRY_AUTH_MODE=none.

    python bench/auth_overhead.py [--runs 15] [--seconds 2] [--callers 64]

Starts one Postgres and one Redis, then two server processes on them that differ only in QUARRY_AUTH_MODE
(`tokens` and `none`). One client process drives one server at a time from 64 concurrent callers on one
channel, each sending a prebuilt GetDatasetRequest in a loop for `--seconds`; the runs alternate between the
two servers (tokens, none, none, tokens, ...), short and many, so both see the same machine state (on a shared
machine the load of other processes moves more than tokens do). Prints requests per second: the median of the
runs with their min-max, and the ratio tokens / none (target: at least 0.9).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from pathlib import Path

from grpc import aio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quarry.v1 import dataset_service_pb2 as dpb  # noqa: E402
from quarry.v1 import dataset_service_pb2_grpc as dpb_grpc  # noqa: E402
from quarry.v1 import namespace_service_pb2 as npb  # noqa: E402
from quarry.v1 import namespace_service_pb2_grpc as npb_grpc  # noqa: E402
from quarry.v1 import token_pb2  # noqa: E402
from quarry.v1 import token_service_pb2 as tpb  # noqa: E402
from quarry.v1 import token_service_pb2_grpc as tpb_grpc  # noqa: E402

from bench.stack import bootstrap, services, start_server  # noqa: E402
from server.listen_ports import free_port  # noqa: E402

NAMESPACE = "bench"


async def rate(address: str, metadata: tuple[tuple[str, str], ...], callers: int, seconds: float) -> float:
    """GetDataset calls per second from `callers` concurrent loops on one channel."""
    request = dpb.GetDatasetRequest(name=f"namespaces/{NAMESPACE}/datasets/ds")
    async with aio.insecure_channel(address) as channel:
        stub = dpb_grpc.DatasetServiceStub(channel)
        await stub.GetDataset(request, metadata=metadata, timeout=10)  # connected, and the call works
        done = 0
        stop = time.perf_counter() + seconds

        async def loop() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                await stub.GetDataset(request, metadata=metadata, timeout=30)
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(callers)))
        return done / (time.perf_counter() - started)


async def prepare(address: str, operator: str) -> str:
    """The namespace, its dataset, and a reader token for it."""
    metadata = (("authorization", f"Bearer {operator}"),)
    async with aio.insecure_channel(address) as channel:
        await npb_grpc.NamespaceServiceStub(channel).CreateNamespace(
            npb.CreateNamespaceRequest(namespace_id=NAMESPACE), metadata=metadata)
        await dpb_grpc.DatasetServiceStub(channel).CreateDataset(
            dpb.CreateDatasetRequest(parent=f"namespaces/{NAMESPACE}", dataset_id="ds"), metadata=metadata)
        created = await tpb_grpc.TokenServiceStub(channel).CreateToken(tpb.CreateTokenRequest(token=token_pb2.Token(
            principal="bench", grants=[token_pb2.Grant(namespace=f"namespaces/{NAMESPACE}",
                                                       role=token_pb2.ROLE_READER)])), metadata=metadata)
    return str(created.secret)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="measured runs per mode (at least 5)")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one run")
    parser.add_argument("--callers", type=int, default=64, help="concurrent callers")
    args = parser.parse_args()
    with services() as svc, contextlib.ExitStack() as stack:
        operator = bootstrap(svc.env)
        servers = {}
        for mode in ("tokens", "none"):
            address = f"127.0.0.1:{free_port()}"
            stack.enter_context(start_server(svc.server_env("file", address, {"QUARRY_AUTH_MODE": mode}),
                                             svc.work / f"server-{mode}.log"))
            servers[mode] = address
        reader = asyncio.run(prepare(servers["tokens"], operator))
        metadata = {"tokens": (("authorization", f"Bearer {reader}"),),
                    "none": (("x-quarry-namespace", NAMESPACE),)}
        for mode in servers:  # warm-up: caches, connection pools, the JIT-less interpreter's own warm-up
            asyncio.run(rate(servers[mode], metadata[mode], args.callers, 1.0))
        results: dict[str, list[float]] = {"tokens": [], "none": []}
        for run in range(args.runs):
            for mode in (("tokens", "none") if run % 2 == 0 else ("none", "tokens")):
                results[mode].append(asyncio.run(rate(servers[mode], metadata[mode], args.callers, args.seconds)))
        print(f"GetDataset, {args.callers} concurrent callers, {args.runs} interleaved runs of {args.seconds:g} s "
              "each (requests per second)")
        for mode, figures in results.items():
            print(f"  auth {mode:6}: median {statistics.median(figures):7.0f}  (min {min(figures):.0f}, "
                  f"max {max(figures):.0f})")
        ratios = [t / n for t, n in zip(results["tokens"], results["none"], strict=True)]
        print(f"  tokens / none: {statistics.median(results['tokens']) / statistics.median(results['none']):.3f} "
              f"(per run pair: {min(ratios):.3f}-{max(ratios):.3f}; target >= 0.9)")


if __name__ == "__main__":
    main()
