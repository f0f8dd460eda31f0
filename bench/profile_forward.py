"""Profile one `relay forward` draining a backlog of plays into a zero-latency sandbox.

    python bench/profile_forward.py BOOTSTRAP [--events N] [--seconds S] [--top K] [--v1]

Writes the backlog (envelope v2, or v1 with --v1), starts the sandbox on the load core
and the forwarder on the server core (as `make bench SCENARIO=forward` does), lets it
run 3 s, then samples it with py-spy for S seconds and prints the K functions with the
most samples on top of the stack (self) and anywhere on it (total), in percent of all
samples. Needs py-spy (the [dev] extra) and a broker at BOOTSTRAP."""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

from relay.bench.backlog import example_bodies, produce_backlog
from relay.bench.procs import LOAD_CORE, SERVER_CORE, start

# What the worker holds at the end: whether it kept its concurrency up.
_GAUGES = ("relay_forward_concurrency_limit", "relay_forward_in_flight", "relay_forward_held")
_BROKER_STATE = os.environ.get("PROFILE_BROKER_STATE", "test-23092").encode()
_FRAME = re.compile(r" \((?:.*/)?([^/:]+)(?::\d+)?\)$")


def _cpu_s(pid: int) -> float:
    """CPU seconds ``pid`` used so far (user + system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _summary(raw: Path, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    anywhere: collections.Counter[str] = collections.Counter()
    relay_own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        # "function (path:line)" -> "function (file)": a function's lines summed
        frames = [_FRAME.sub(r" (\1)", frame) for frame in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            anywhere[frame] += count
        for frame in set(stack.split(";")):
            if "relay/" in frame and "site-packages" not in frame and "cli.py" not in frame:
                relay_own[_FRAME.sub(r" (\1)", frame)] += count
    lines = [f"{total} samples", "self%  function (file)"]
    lines += [f"{100 * n / total:5.1f}  {name}" for name, n in own.most_common(top)]
    lines += ["total%  function (file)"]
    lines += [f"{100 * n / total:5.1f}  {name}" for name, n in anywhere.most_common(top)]
    lines += ["total%  the relay's own functions (file)"]
    lines += [f"{100 * n / total:5.1f}  {name}" for name, n in relay_own.most_common(top)]
    return "\n".join(lines)


def _broker() -> list[tuple[str, int]]:
    """The broker's pid, when one java process runs kafka.Kafka on this machine's
    test or bench port (best effort: the figure is context, not a result)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                command = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"kafka.Kafka" in command and any(_BROKER_STATE in part for part in command):
                found.append(("broker", int(proc.name)))
    return found[:1]


async def main(bootstrap: str, events: int, seconds: int, top: int, version: int) -> None:
    prefix = f"prof{uuid.uuid4().hex[:8]}"
    await produce_backlog(
        bootstrap, prefix, example_bodies(events, ["play"]), partitions=12, version=version
    )
    sandbox = await start(
        "sandbox",
        ["relay", "sandbox"],
        url="http://127.0.0.1:18590",
        env={"RELAY_SANDBOX_PORT": "18590", "RELAY_LOG_LEVEL": "WARNING"},
        core=LOAD_CORE,
    )
    env = {
        "RELAY_KAFKA_BOOTSTRAP": bootstrap,
        "RELAY_TOPIC_PREFIX": prefix,
        "RELAY_APP_ID": "1",
        "RELAY_LOG_LEVEL": "WARNING",
        "RELAY_CONSUMER_GROUP": f"{prefix}-forward",
        "RELAY_FORWARD_PORT": "18591",
        "RELAY_UPSTREAM_URL": sandbox.url,
        "RELAY_UPSTREAM_BUDGET_RPS": "0",
        "RELAY_CONCURRENCY_MAX": "64",
    }
    forward = await start(
        "forward", ["relay", "forward"], url="http://127.0.0.1:18591", env=env, core=SERVER_CORE
    )
    try:
        await asyncio.sleep(3)
        pids = {"forward": forward.pid, "sandbox": sandbox.pid, **dict(_broker())}
        used = {name: _cpu_s(pid) for name, pid in pids.items()}
        began = time.monotonic()
        with tempfile.TemporaryDirectory() as folder:
            raw = Path(folder) / "profile.txt"
            await asyncio.to_thread(
                subprocess.run,
                [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "--pid",
                    str(forward.pid),
                    "--duration",
                    str(seconds),
                    "--format",
                    "raw",
                    "--output",
                    str(raw),
                    "--nonblocking",
                    "--rate",
                    "250",
                ],
                check=True,
                capture_output=True,
            )
            elapsed = time.monotonic() - began
            print(_summary(raw, top))
        print(
            "CPU while sampled (100% = one core): "
            + ", ".join(
                f"{name} {100 * (_cpu_s(pid) - used[name]) / elapsed:.0f}%"
                for name, pid in pids.items()
            )
        )
        async with (
            aiohttp.ClientSession() as session,
            session.get(forward.url + "/metrics") as answer,
        ):
            for line in (await answer.text()).splitlines():
                if line.startswith(_GAUGES) and ('type="play"' in line or "{" not in line):
                    print(line)
    finally:
        forward.stop()
        sandbox.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("bootstrap")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--v1", action="store_true", help="write envelope v1")
    arguments = parser.parse_args()
    asyncio.run(
        main(
            arguments.bootstrap,
            arguments.events,
            arguments.seconds,
            arguments.top,
            1 if arguments.v1 else 2,
        )
    )
