"""What the sandbox accepted, and what it refused, so tests can prove no loss.

In memory by default; kept in a file (``Ledger.kept_in``, RELAY_SANDBOX_LEDGER_FILE)
when a test kills the sandbox itself and must still know everything it accepted."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

__all__ = ["Ledger"]


@dataclass
class Ledger:
    accepted: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    _keys: Counter[str] = field(default_factory=Counter)
    _journal: BinaryIO | None = None

    @classmethod
    def kept_in(cls, path: Path) -> Ledger:
        """A ledger whose acceptances outlive the process: those already in ``path``
        (one JSON object a line) are read back, and each new one is appended with one
        unbuffered write before the sandbox answers, so a SIGKILL loses none that was
        answered. The write goes to the page cache and does not wait for the disk."""
        ledger = cls()
        if path.exists():
            for line in path.read_bytes().splitlines():
                if line.strip():
                    ledger._record(orjson.loads(line))
        ledger._journal = path.open("ab", buffering=0)
        return ledger

    def accept(self, path: str, body: Any, key: str | None, credential: str, at: float) -> None:
        entry = {
            "path": path,
            "body": body,
            "idempotencyKey": key,
            "credential": credential,
            "at": at,
        }
        if self._journal is not None:
            self._journal.write(orjson.dumps(entry) + b"\n")
        self._record(entry)

    def _record(self, entry: dict[str, Any]) -> None:
        self.accepted.append(entry)
        self.counts[entry["path"]] += 1
        if entry["idempotencyKey"] is not None:
            self._keys[entry["idempotencyKey"]] += 1

    def refuse(
        self, path: str, status: int, code: str, key: str | None, credential: str | None, at: float
    ) -> None:
        self.refused.append(
            {
                "path": path,
                "status": status,
                "failureCode": code,
                "idempotencyKey": key,
                "credential": credential,
                "at": at,
            }
        )

    @property
    def duplicates(self) -> int:
        """Accepted requests whose Idempotency-Key had been accepted before."""
        return sum(count - 1 for count in self._keys.values())

    def page(self, offset: int, limit: int, entries: bool) -> dict[str, Any]:
        page: dict[str, Any] = {
            "total": len(self.accepted),
            "counts": dict(self.counts),
            "duplicates": self.duplicates,
            "refusedTotal": len(self.refused),
        }
        if entries:
            page["entries"] = self.accepted[offset : offset + limit]
            page["refused"] = self.refused[offset : offset + limit]
        return page

    def close(self) -> None:
        """Close the file the ledger is kept in, if any; safe to call twice."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def clear(self) -> None:
        self.accepted.clear()
        self.refused.clear()
        self.counts.clear()
        self._keys.clear()
        if self._journal is not None:
            self._journal.truncate(0)
