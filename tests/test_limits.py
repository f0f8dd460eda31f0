"""The process settings the relay applies to itself once started."""

from __future__ import annotations

import subprocess
import sys

from relay.config import Settings


def _after_settling(threshold: int) -> str:
    # In a child: freezing the collector's generations is for the whole process.
    code = (
        "import gc; from relay.limits import settle_collector; "
        f"middle, old = gc.get_threshold()[1:]; settle_collector({threshold}); "
        "print(gc.get_threshold() == ({0}, middle, old), gc.get_freeze_count() > 0)".format(
            threshold
        )
    )
    return subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60
    ).stdout.strip()


def test_the_young_generation_threshold_is_the_setting_and_start_up_is_frozen() -> None:
    assert _after_settling(Settings.from_env({}).gc_young_threshold) == "True True"


def test_the_smallest_threshold_is_accepted() -> None:
    assert Settings.from_env({"RELAY_GC_YOUNG_THRESHOLD": "1"}).gc_young_threshold == 1
    assert _after_settling(1) == "True True"
