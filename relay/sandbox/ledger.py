"""What the sandbox accepted, and what it refused, so tests can prove no loss."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Ledger"]


@dataclass
class Ledger:
    accepted: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    _keys: Counter[str] = field(default_factory=Counter)

    def accept(self, path: str, body: Any, key: str | None, credential: str, at: float) -> None:
        self.accepted.append(
            {"path": path, "body": body, "idempotencyKey": key, "credential": credential, "at": at}
        )
        self.counts[path] += 1
        if key is not None:
            self._keys[key] += 1

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

    def clear(self) -> None:
        self.accepted.clear()
        self.refused.clear()
        self.counts.clear()
        self._keys.clear()
