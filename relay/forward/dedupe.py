"""The ids a worker settled lately: an event id is delivered at most once within
RELAY_DEDUPE_WINDOW_S, holding at most RELAY_DEDUPE_MAX_IDS ids.

An id is remembered when its event settles, delivered or dead-lettered (also when
ingest delivered it itself: DELIVERED_HEADER). A later record of a remembered id is
a duplicate (a client's retry, a record written twice, one delivered before a crash
and fetched again): it is skipped, counted and committed like a delivered one.
Dead-lettered ids count too, because the window is refilled from Kafka after a
rebalance (relay/forward/refill.py), where a delivered record and a dead-lettered one
look alike: a copy of a dead letter would be refused again anyway, and
``relay dlq replay`` is how it is sent again.

A replay is another generation of its event: the key is the id and the last
``relay-replayed-from`` header (the dead letter's position, set by relay/dlq_tools.py),
so the replay is delivered although its original settled within the window, and a
replay fetched twice is still delivered once.

Ids leave after the window, or, when the count bound is reached, the oldest first
(then a duplicate of it older than the window's count is delivered again: the bound
is a memory bound, sized in docs/PERFORMANCE.md).
"""

from __future__ import annotations

from collections import OrderedDict

from relay.envelope import ID_HEADER, REPLAY_HEADER

__all__ = ["REPLAY_HEADER", "SettledIds", "dedupe_key", "key_of"]


def key_of(event_id: bytes, replayed_from: bytes | None) -> bytes:
    """The key of an event id, of a replay generation when ``replayed_from`` is set."""
    return event_id + b"\x00" + replayed_from if replayed_from else event_id


def dedupe_key(event_id: bytes | None, headers: tuple[tuple[str, bytes], ...]) -> bytes | None:
    """The key of a record: its id, and its replay generation if it is a replay.
    ``event_id`` None: taken from the record's headers (None when it has none)."""
    replay = b""
    for name, value in headers:
        if name == REPLAY_HEADER:
            replay = value  # the last one: a replay of a replay carries both
        elif event_id is None and name == ID_HEADER:
            event_id = value
    if event_id is None:
        return None
    return key_of(event_id, replay)


class SettledIds:
    """Keys with the wall time they settled at. Never blocks; O(1) per call."""

    def __init__(self, window_s: float, max_ids: int) -> None:
        self.window_s = window_s
        self.max_ids = max_ids
        self._at: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._at)

    def seen(self, key: bytes, now: float) -> bool:
        """Whether ``key`` settled within the window before ``now``."""
        at = self._at.get(key)
        return at is not None and at > now - self.window_s

    def add(self, key: bytes, at: float, now: float) -> None:
        """Remember ``key`` as settled at ``at`` (seconds since the epoch: the record's
        timestamp when refilled, the settle time otherwise); ``now`` ages the others."""
        if at <= now - self.window_s:
            return
        known = self._at.get(key)
        if known is None or known < at:
            self._at[key] = at
            self._at.move_to_end(key)
        entries = self._at
        while len(entries) > self.max_ids:
            entries.popitem(last=False)
        # Oldest-first holds for ids added live; refilled ones may sit behind newer ones
        # and then leave a little late, never early.
        while entries:
            oldest_key = next(iter(entries))
            if entries[oldest_key] > now - self.window_s:
                break
            del entries[oldest_key]
