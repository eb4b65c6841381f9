"""Generate the Python stubs of the contract: `python scripts/generate_stubs.py [--check]`.

The stubs live in the client package (`clients/python/src/quarry/v1/`), so the SDK ships them and the
server imports them from there. `--check` regenerates into a temporary directory and exits 1 when the
committed files differ, which is what the staleness test runs.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "proto"
OUT_ROOT = ROOT / "clients" / "python" / "src"
PACKAGE_DIR = Path("quarry") / "v1"
INIT_TEXT = '"""Generated from proto/quarry/v1 by scripts/generate_stubs.py; do not edit."""\n'


def generate(out_root: Path) -> list[Path]:
    """Run protoc over every proto file; return the generated paths relative to out_root."""
    protos = sorted(p.relative_to(PROTO_ROOT).as_posix() for p in (PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))
    well_known = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    (out_root / PACKAGE_DIR / "__init__.py").write_text(INIT_TEXT)
    return sorted(p.relative_to(out_root) for p in (out_root / PACKAGE_DIR).iterdir() if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the committed stubs are stale")
    args = parser.parse_args()
    if not args.check:
        target = OUT_ROOT / PACKAGE_DIR
        for old in target.glob("*_pb2*.py*"):
            old.unlink()
        target.mkdir(parents=True, exist_ok=True)
        generated = generate(OUT_ROOT)
        print(f"generated {len(generated)} files in {target.relative_to(ROOT)}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        committed = sorted(p.relative_to(OUT_ROOT) for p in (OUT_ROOT / PACKAGE_DIR).iterdir() if p.is_file())
        stale = [str(p) for p in fresh if not (OUT_ROOT / p).exists()
                 or not filecmp.cmp(Path(tmp) / p, OUT_ROOT / p, shallow=False)]
        extra = [str(p) for p in committed if p not in fresh]
        if stale or extra:
            print("stale generated stubs; run `make proto`:", ", ".join(stale + extra), file=sys.stderr)
            return 1
    print("generated stubs are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
