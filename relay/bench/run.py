"""`relay bench`: start a broker of its own, run the scenarios, write the results."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from relay.bench.procs import ROOT
from relay.bench.report import write
from relay.bench.scenarios import SCENARIOS, Context
from relay.limits import raise_open_files_limit

__all__ = ["code_measured", "run_bench", "start_broker"]

BENCH_KAFKA_PORT = 29092


STATE_DIR = ROOT / ".cache" / "kafka" / f"bench-{BENCH_KAFKA_PORT}"


def code_measured() -> dict[str, str]:
    """Which checkout's code the scenarios start (ROOT: where this module was imported
    from, not the working directory: `relay`'s script in a venv shared by several
    checkouts imports the one the venv was installed from), and its commit."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout.strip()
    return {"checkout": str(ROOT), "commit": commit or "unknown"}


def _kafkactl(command: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KAFKA_PORT": str(BENCH_KAFKA_PORT),
        "KAFKA_STATE_DIR": str(STATE_DIR),
        "KAFKA_HEAP": "768m",
    }
    return subprocess.run(
        [str(ROOT / "deploy" / "kafka" / "kafkactl"), command],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


async def run_bench(names: list[str], rounds: int, seconds: int) -> dict[str, dict[str, Any]]:
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario {unknown[0]!r}; known: {', '.join(SCENARIOS)}")
    code = code_measured()
    print(f"relay bench: measuring {code['checkout']} at {code['commit']}", flush=True)
    raise_open_files_limit()  # load generators open many sockets
    started_broker = start_broker(_kafkactl, STATE_DIR)
    results: dict[str, dict[str, Any]] = {}
    try:
        with tqdm(total=len(names), unit="scenario") as bar:
            context = Context(
                f"127.0.0.1:{BENCH_KAFKA_PORT}",
                rounds=rounds,
                seconds=seconds,
                progress=lambda message: bar.set_postfix_str(message, refresh=True),
                broker_pid=_live_broker(STATE_DIR),
            )
            for name in names:
                bar.set_description(name)
                begun = time.monotonic()
                result = await SCENARIOS[name](context)
                result["seconds"] = round(time.monotonic() - begun, 1)
                results[name] = result
                write({name: result}, {"rounds": rounds, "seconds_per_run": seconds, **code})
                bar.update(1)
    finally:
        if started_broker:
            _kafkactl("down")
    return results


def start_broker(
    kafkactl: Callable[[str], subprocess.CompletedProcess[str]], state_dir: Path
) -> bool:
    """Start the bench broker without the topics of earlier runs, unless one already
    answers there (then it is used as it is, and left running). True when this call
    started it. Raises ``RuntimeError`` when the broker does not start, or when one
    runs on ``state_dir`` but does not answer (still starting, or hung).

    Every scenario writes topics of its own prefix, and a broker that kept them from
    earlier runs (thousands of partitions after a few sessions) does background work
    for all of them while it is measured: each run starts on an empty broker, as a
    fresh clone's does."""
    if kafkactl("status").returncode == 0:
        return False
    pid = _live_broker(state_dir)
    if pid is not None:  # starting, or hung: its folder is not ours to wipe
        raise RuntimeError(
            f"a broker (pid {pid}) runs on {state_dir} but does not answer; wait for it, "
            f"or stop it with KAFKA_PORT={BENCH_KAFKA_PORT} "
            f"KAFKA_STATE_DIR={state_dir} deploy/kafka/kafkactl down"
        )
    # The topics only: kafkactl formats the empty folder again with the same cluster
    # id, and the last run's server.log stays to be read.
    data = state_dir / "data"
    if data.exists():
        shutil.rmtree(data)
    broker = kafkactl("up")
    if broker.returncode != 0:
        raise RuntimeError(f"could not start the bench broker:\n{broker.stderr}")
    return True


def _live_broker(state_dir: Path) -> int | None:
    """The pid in ``state_dir``'s kafka.pid when that process runs this folder's
    broker (kafkactl's own test: its command line names the folder's properties)."""
    try:
        pid = int((state_dir / "kafka.pid").read_text().split()[0])
        command = (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return pid if str(state_dir / "server.properties").encode() in command else None
