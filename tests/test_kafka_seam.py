"""Only relay/kafka/ imports aiokafka: the rest of the relay, and the benchmarks,
talk to Kafka through the seam (issue 10 §1)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEAM = ROOT / "relay" / "kafka"


def _imports_aiokafka(path: Path) -> list[int]:
    """The lines of ``path`` that import aiokafka or one of its modules."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        if any(name == "aiokafka" or name.startswith("aiokafka.") for name in names):
            lines.append(node.lineno)
    return lines


def test_only_the_kafka_seam_imports_aiokafka() -> None:
    sources = [*(ROOT / "relay").rglob("*.py"), *(ROOT / "bench").rglob("*.py")]
    assert len(sources) > 50  # the walk found the code
    offenders = {
        str(path.relative_to(ROOT)): lines
        for path in sources
        if not path.is_relative_to(SEAM) and (lines := _imports_aiokafka(path))
    }
    assert offenders == {}, f"aiokafka imported outside relay/kafka/ (file: lines): {offenders}"


def test_the_seam_itself_is_seen() -> None:
    """The check above would pass on an empty walk; the seam's own imports prove it
    reads what it should."""
    assert _imports_aiokafka(SEAM / "consumer.py")
