from __future__ import annotations

from relay.forward.offsets import PartitionOffsets


def next_commit(offsets: PartitionOffsets) -> int | None:
    """Read afresh: mypy keeps ``offsets.next_commit is None`` narrowed across done()."""
    return offsets.next_commit


def test_commit_waits_for_the_oldest_held_offset() -> None:
    offsets = PartitionOffsets()
    for offset in range(10, 15):
        offsets.take(offset)
    assert next_commit(offsets) is None
    offsets.done(12)
    offsets.done(11)
    assert next_commit(offsets) is None  # 10 still out (say, retrying)
    offsets.done(10)
    assert offsets.next_commit == 13
    offsets.done(14)
    assert offsets.next_commit == 13
    offsets.done(13)
    assert offsets.next_commit == 15
    assert offsets.held == 0


def test_gaps_in_offsets_are_fine() -> None:
    offsets = PartitionOffsets()  # compaction or transaction markers leave gaps
    for offset in (3, 7, 8):
        offsets.take(offset)
    offsets.done(7)
    offsets.done(3)
    assert offsets.next_commit == 8
