"""A text summary of a py-spy profile (`py-spy record --format raw`: one line per stack, `a;b;c COUNT`).

    python -m bench.profile FILE [--top 25]

Prints the share of samples each function takes by itself (the stack's last frame) and with what it calls
(every stack it appears in, once per stack), functions named `name (file)` without line numbers.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME_LINE = re.compile(r":\d+\)$")


def _frame(text: str) -> str:
    """A frame without its line number, its file shortened to the part under site-packages or the checkout."""
    text = _FRAME_LINE.sub(")", text.strip())
    if text.startswith("process "):
        return "(process)"  # py-spy --subprocesses: the process and its command line
    name, _, path = text.partition(" (")
    for marker in ("site-packages/", f"/{ROOT.name}/", "/lib/python3.", "/lib/python3"):
        if marker in path:
            return f"{name} ({path.split(marker, 1)[1]}"
    return text


def summary(path: Path, top: int = 25) -> list[str]:
    """The lines of the summary of one raw profile."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        count = int(match["count"])
        frames = [_frame(frame) for frame in match["stack"].split(";") if frame]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return ["(no samples)"]
    lines = [f"{total} samples; by itself:"]
    lines += [f"  {count / total:6.1%}  {frame}" for frame, count in own.most_common(top)]
    lines.append("with what it calls:")
    lines += [f"  {count / total:6.1%}  {frame}" for frame, count in inclusive.most_common(top)]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print("\n".join(summary(args.file, args.top)))


if __name__ == "__main__":
    main()
