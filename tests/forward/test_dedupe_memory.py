"""What the dedupe window costs: memory per 100,000 ids, measured with tracemalloc,
and the default RELAY_DEDUPE_MAX_IDS kept under 50 MB by it (docs/PERFORMANCE.md)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

from relay.config import Settings
from relay.envelope import new_event_id
from relay.forward.dedupe import SettledIds, dedupe_key

IDS = 100_000
BUDGET_BYTES = 50 * 1000 * 1000


def test_the_default_window_stays_under_50_mb(report: Callable[[str], None]) -> None:
    window = SettledIds(window_s=900.0, max_ids=IDS)
    now = 1_795_000_000.0
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for number in range(IDS):
            # The keys are made here as in the worker (the id's text, encoded), and
            # counted: the window keeps them alive.
            key = dedupe_key(new_event_id(1_795_000_000_000 + number).encode(), ())
            assert key is not None
            window.add(key, now + number / 1000, now + number / 1000)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(window) == IDS
    default = Settings().dedupe_max_ids
    at_default = used / IDS * default
    report(
        f"dedupe window: {used / 1e6:.1f} MB per {IDS:,} ids ({used / IDS:.0f} B/id); "
        f"RELAY_DEDUPE_MAX_IDS={default:,}: {at_default / 1e6:.1f} MB"
    )
    assert at_default < BUDGET_BYTES
