"""Processes for benchmarks: started pinned to a core, waited for, measured, stopped.

Pinning (``taskset``): on this 2-core machine the server under test gets core 0
and the load generator core 1, the same for the relay and for its ceiling, so the
two compete for the same core against the same generator. The Kafka broker and
the sandbox are not pinned: they are part of the relay's cost, not the ceiling's.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

__all__ = [
    "LOAD_CORE",
    "ROOT",
    "SERVER_CORE",
    "Proc",
    "WrkResult",
    "cpu_seconds",
    "rss_mb",
    "spawn",
    "start",
    "wrk",
]

ROOT = Path(__file__).resolve().parents[2]
SERVER_CORE = 0
LOAD_CORE = 1


def pinned(command: Sequence[str], core: int | None) -> list[str]:
    if core is None or shutil.which("taskset") is None or (os.cpu_count() or 1) <= core:
        return list(command)
    return ["taskset", "-c", str(core), *command]


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    url: str

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, bound: float = 30.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                return self.popen.wait(timeout=bound)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        return self.popen.wait()


async def _wait_http(url: str, popen: subprocess.Popen[bytes], bound: float = 60.0) -> None:
    async with aiohttp.ClientSession() as session, asyncio.timeout(bound):
        while True:
            if popen.poll() is not None:
                raise RuntimeError(
                    f"{url}: the process exited with {popen.returncode} during start"
                )
            try:
                async with session.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)


async def start(
    name: str,
    command: Sequence[str],
    *,
    url: str,
    health: str = "/healthz",
    env: dict[str, str] | None = None,
    core: int | None = None,
    cwd: Path = ROOT,
) -> Proc:
    """Start ``command`` (``python -m relay ...`` when it begins with "relay") in
    ``cwd`` (another checkout runs its own code)."""
    popen = spawn(name, command, env, core, cwd)
    proc = Proc(name, popen, url)
    try:
        await _wait_http(url + health, popen)
    except BaseException:
        proc.stop()
        raise
    return proc


def spawn(
    name: str,
    command: Sequence[str],
    env: dict[str, str] | None = None,
    core: int | None = None,
    cwd: Path = ROOT,
) -> subprocess.Popen[bytes]:
    """Start ``command`` with its output in .cache/bench/<name>.log; no waiting."""
    if command[0] == "relay":
        command = [sys.executable, "-m", "relay", *command[1:]]
    logs = ROOT / ".cache" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{name}.log", "ab") as output:  # the child keeps its own descriptor
        return subprocess.Popen(
            pinned(command, core),
            env={**os.environ, **(env or {})},
            stdout=output,
            stderr=output,
            cwd=cwd,
        )


def cpu_seconds(pid: int) -> float:
    """User and system CPU time ``pid`` has used so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int, peak: bool = False) -> float:
    """Resident memory of ``pid`` in MB (VmHWM, the peak, when ``peak``)."""
    field = "VmHWM" if peak else "VmRSS"
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for pid {pid}")


@dataclass(frozen=True, slots=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx answers and socket errors
    requests: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        raise ValueError(f"unreadable latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(url: str, *, seconds: int, connections: int, script: Path) -> WrkResult:
    """One wrk run on the load core. Raises RuntimeError when wrk is missing or fails."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk not found: `make bench` installs it (apt-get install wrk)")
    command = pinned(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        LOAD_CORE,
    )
    started = time.monotonic()
    output = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60).stdout
    if time.monotonic() - started < seconds:
        raise RuntimeError(f"wrk ended early:\n{output}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(r"Socket errors:.*", output)
    errors = int(bad.group(1)) if bad else 0
    if socket_errors:
        errors += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(0)))
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    return WrkResult(rps, p50, p99, errors, requests)
