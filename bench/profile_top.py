"""Summarise py-spy's raw (collapsed) stacks: the functions with the most samples on
the stack (inclusive) and at the top of it (self), as shares of all samples."""

from __future__ import annotations

import re
import sys
from collections import Counter

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _name(frame: str) -> str:
    match = _FRAME.match(frame)
    if match is None:
        return frame
    path = match.group("file")
    for marker in ("site-packages/", "/relay/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match.group('function')} ({path})"


def main(path: str, top: int = 25) -> None:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    with open(path) as lines:
        for line in lines:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            samples = int(count)
            total += samples
            frames = [_name(frame) for frame in stack.split(";")[1:]]  # [0]: the thread
            for frame in set(frames):
                inclusive[frame] += samples
            if frames:
                own[frames[-1]] += samples
    print(f"{total} samples")
    for title, table in (("inclusive", inclusive), ("self", own)):
        print(f"\ntop {top} by {title} share")
        for frame, samples in table.most_common(top):
            print(f"{100 * samples / total:5.1f}%  {frame}")


if __name__ == "__main__":
    main(sys.argv[1])
