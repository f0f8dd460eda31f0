"""Every wait in forward goes through the injected clock, so that tests move time."""

from __future__ import annotations

import ast
from pathlib import Path

FORWARD = Path(__file__).resolve().parents[2] / "relay" / "forward"
# Bounds on Kafka I/O, not waits of forward's own logic: the probe's reads (it talks to
# a real broker only, never in the clock-driven tests).
ALLOWED = {("backlog.py", "timeout")}
WAITS = {"sleep", "call_later", "call_at", "timeout", "wait_for"}


def bare_waits() -> list[str]:
    found = []
    for path in sorted(FORWARD.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in WAITS
                and isinstance(node.value, ast.Name)
                and node.value.id in ("asyncio", "loop")
                and (path.name, node.attr) not in ALLOWED
            ):
                found.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
    return found


def test_forward_waits_only_on_the_injected_clock() -> None:
    assert bare_waits() == []


def test_the_check_sees_the_forward_modules() -> None:
    assert (FORWARD / "dispatch.py").exists()
    assert len(list(FORWARD.glob("*.py"))) >= 8
