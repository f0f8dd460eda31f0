"""The process settings the relay applies to itself once started."""

from __future__ import annotations

import subprocess
import sys

from relay.config import Settings


def _after_settling(threshold: int | None) -> str:
    # In a child: freezing the collector's generations is for the whole process.
    expected = "gc.get_threshold()[0]" if threshold is None else str(threshold)
    code = (
        "import gc; from relay.limits import settle_collector; "
        f"young = {expected}; middle, old = gc.get_threshold()[1:]; "
        f"settle_collector({threshold}); "
        "print(gc.get_threshold() == (young, middle, old), gc.get_freeze_count() > 0)"
    )
    return subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60
    ).stdout.strip()


def test_the_young_generation_threshold_is_the_setting_and_start_up_is_frozen() -> None:
    assert _after_settling(Settings.from_env({}).gc_young_threshold) == "True True"


def test_the_smallest_threshold_is_accepted() -> None:
    assert Settings.from_env({"RELAY_GC_YOUNG_THRESHOLD": "1"}).gc_young_threshold == 1
    assert _after_settling(1) == "True True"


def test_forward_keeps_pythons_threshold_and_freezes() -> None:
    assert _after_settling(None) == "True True"
