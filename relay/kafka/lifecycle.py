"""Start, stop and ``async with`` for the seam's classes that wrap one aiokafka client.

A start that fails closes what it opened and raises ``KafkaUnavailable`` naming the
bootstrap servers, so that no caller sees aiokafka's errors or leaks a half-started
client. Subclasses say how their client opens and closes.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from aiokafka.errors import KafkaError

from relay.errors import KafkaUnavailable

__all__ = ["ClientLifecycle"]


class ClientLifecycle:
    _bootstrap: str

    async def _open(self) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        """Raises ``KafkaUnavailable`` when no broker answers."""
        try:
            await self._open()
        except KafkaError as exc:
            await self._close()
            raise KafkaUnavailable(f"cannot reach Kafka at {self._bootstrap}: {exc}") from exc

    async def stop(self) -> None:
        """Safe to call twice."""
        await self._close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()
