"""Which offset of a partition may be committed: the one after the longest run of
done offsets from the oldest still held. Out-of-order completion (other keys, retries)
never lets a commit pass an event that is not delivered or dead-lettered."""

from __future__ import annotations

from collections import deque

__all__ = ["PartitionOffsets"]


class PartitionOffsets:
    def __init__(self) -> None:
        self._held: deque[int] = deque()  # offsets taken, in log order
        self._done: set[int] = set()
        self._next_commit: int | None = None
        self.first: int | None = None  # the first offset taken since assignment

    def take(self, offset: int) -> None:
        """Record a fetched offset; offsets of one partition arrive in increasing order."""
        if self.first is None:
            self.first = offset
        self._held.append(offset)

    def done(self, offset: int) -> None:
        self._done.add(offset)
        held, finished = self._held, self._done
        while held and held[0] in finished:
            finished.discard(held[0])
            self._next_commit = held.popleft() + 1

    @property
    def next_commit(self) -> int | None:
        """The offset to commit (Kafka's convention: the next one to read), or None."""
        return self._next_commit

    @property
    def held(self) -> int:
        return len(self._held)
