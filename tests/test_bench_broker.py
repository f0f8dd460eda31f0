"""`relay bench` measures on an empty broker of its own, and leaves alone one that
already runs (someone else's state, someone else's process)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from relay.bench.run import start_broker


class _Kafkactl:
    def __init__(self, *, running: bool, up_fails: bool = False) -> None:
        self.running = running
        self.up_fails = up_fails
        self.commands: list[str] = []

    def __call__(self, command: str) -> subprocess.CompletedProcess[str]:
        self.commands.append(command)
        failed = (command == "status" and not self.running) or (command == "up" and self.up_fails)
        return subprocess.CompletedProcess([command], 1 if failed else 0, "", "no luck")


def _state(tmp_path: Path) -> Path:
    state = tmp_path / "bench-29092"
    (state / "data" / "bench123.play-0").mkdir(parents=True)
    return state


def test_a_stopped_broker_starts_again_without_the_topics_of_earlier_runs(tmp_path: Path) -> None:
    state = _state(tmp_path)
    kafkactl = _Kafkactl(running=False)
    assert start_broker(kafkactl, state) is True
    assert kafkactl.commands == ["status", "up"]
    assert not state.exists()


def test_a_running_broker_is_used_as_it_is(tmp_path: Path) -> None:
    state = _state(tmp_path)
    kafkactl = _Kafkactl(running=True)
    assert start_broker(kafkactl, state) is False
    assert kafkactl.commands == ["status"]
    assert (state / "data" / "bench123.play-0").is_dir()


def test_a_broker_that_does_not_start_is_an_error_with_its_output(tmp_path: Path) -> None:
    kafkactl = _Kafkactl(running=False, up_fails=True)
    with pytest.raises(RuntimeError, match="no luck"):
        start_broker(kafkactl, _state(tmp_path))
