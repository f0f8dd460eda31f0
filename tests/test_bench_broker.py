"""`relay bench` measures on an empty broker of its own, and leaves alone one that
already runs (someone else's state, someone else's process)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import relay
from relay.bench.run import code_measured, start_broker


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
    (state / "server.log").write_text("the last run's log\n")
    (state / "cluster.id").write_text("abc\n")
    return state


def test_a_stopped_broker_starts_again_without_the_topics_of_earlier_runs(tmp_path: Path) -> None:
    state = _state(tmp_path)
    (state / "kafka.pid").write_text("999999999\n")  # a broker that ran, and is gone
    kafkactl = _Kafkactl(running=False)
    assert start_broker(kafkactl, state) is True
    assert kafkactl.commands == ["status", "up"]
    assert not (state / "data").exists()
    assert (state / "server.log").read_text() == "the last run's log\n"
    assert (state / "cluster.id").exists()


def test_a_broker_that_runs_but_does_not_answer_keeps_its_folder(tmp_path: Path) -> None:
    state = _state(tmp_path)
    # Stands in for a broker still starting: alive, its command line naming the folder.
    broker = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", str(state / "server.properties")]
    )
    try:
        # Until the child has run exec, its command line is still this test's.
        named_by = time.monotonic() + 10
        while str(state).encode() not in Path(f"/proc/{broker.pid}/cmdline").read_bytes():
            assert time.monotonic() < named_by, "the stand-in broker never started"
            time.sleep(0.01)
        (state / "kafka.pid").write_text(f"{broker.pid}\n")
        kafkactl = _Kafkactl(running=False)
        with pytest.raises(RuntimeError, match=f"pid {broker.pid}.*does not answer"):
            start_broker(kafkactl, state)
        assert kafkactl.commands == ["status"]
        assert (state / "data" / "bench123.play-0").is_dir()
    finally:
        broker.kill()
        broker.wait()


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relay", "bench", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("option", ["--rounds", "--seconds"])
@pytest.mark.parametrize("value", ["0", "-3"])
def test_bench_rounds_and_seconds_start_at_one(option: str, value: str) -> None:
    ran = _bench(option, value)  # refused before any broker starts
    assert ran.returncode == 2
    assert f"argument {option}: must be 1 or more, not {value}" in ran.stderr


def test_bench_help_names_every_scenario() -> None:
    from relay.bench.scenarios import SCENARIOS

    ran = _bench("--help")
    assert ran.returncode == 0
    text = " ".join(ran.stdout.split()).replace(", ", ",")  # argparse wraps the help
    listed = text.split("comma-separated,from: ")[1].split()[0].split(",")
    missing = [name for name in SCENARIOS if name not in listed]
    assert not missing, f"--scenario's help leaves out {missing}"


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


def test_the_results_say_which_checkout_and_commit_they_measured() -> None:
    code = code_measured()
    assert code["checkout"] == str(Path(relay.__file__).resolve().parents[1])
    assert re.fullmatch(r"[0-9a-f]{40}", code["commit"]), code
