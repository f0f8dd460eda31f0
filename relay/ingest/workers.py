"""``relay ingest --workers N``: N ingest processes on one port, started, watched and
stopped together.

Each worker is a whole ingest process (``relay.ingest.server.serve``) with its own
producer, facts reader and registry; they listen on the same address with
SO_REUSEPORT and the kernel spreads new connections over them (a connection stays
with the worker that accepted it). The supervisor serves nothing public: it starts
the workers, starts again one that exits unasked (at most
RELAY_INGEST_WORKER_RESTARTS_PER_MIN a minute: ``relay.ingest.restarts``), merges
their metrics for whichever worker is scraped (``relay.ingest.group_metrics``), and
relays signals.

Start: if a worker exits before every worker listens, the group stops and the
command exits with that worker's status (a setting or Kafka to fix, which the worker
printed) instead of restarting it.

Shutdown at SIGTERM or SIGINT: the supervisor sends SIGTERM to every worker and each
follows ingest's own order (``relay.ingest.server``): readiness 503 at once, the grace
period, listener closed, in-flight requests finished, producer flushed. A second
signal is relayed too (the workers skip the rest of the grace). The supervisor waits
for them all, bounded by RELAY_SHUTDOWN_GRACE_S + RELAY_SHUTDOWN_TIMEOUT_S + a margin
(then SIGKILL), and exits 0 when every worker exited 0. Workers ask the kernel for
SIGTERM if the supervisor dies (kill -9), so none outlives it holding the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.process_collector import ProcessCollector

from relay.clock import Clock, SystemClock
from relay.config import ConfigError, Settings
from relay.ingest.group_metrics import GroupMetrics, Scrape
from relay.ingest.restarts import RestartBudget
from relay.ingest.seat import (
    ask,
    exposition_app,
    fetch_exposition,
    group_socket,
    unready_file,
    worker_socket,
)
from relay.metrics import WorkerGroupMetrics

__all__ = ["Supervisor"]

log = logging.getLogger("relay.ingest")

STOP_MARGIN_S = 15.0  # past grace + drain: the producer's flush and close
START_POLL_S = 0.05
READINESS_POLL_S = 0.2  # how stale a worker's view of its group's readiness may be


class Supervisor:
    def __init__(self, settings: Settings, count: int, clock: Clock | None = None) -> None:
        if settings.ingest_port == 0:
            raise ConfigError("RELAY_INGEST_PORT=0 with several workers: each would get a port")
        if settings.ingest_upstream_rps > 0 and count > settings.ingest_max_processes:
            # Forward reserves RELAY_INGEST_UPSTREAM_RPS x RELAY_INGEST_MAX_PROCESSES of
            # each credential's budget for ingest, and every worker is a process there.
            log.warning(
                "more ingest workers than RELAY_INGEST_MAX_PROCESSES: set it, for forward, "
                "to the most ingest pods times the workers of each, or the upstream may "
                "see more than its budget",
                extra={"workers": count, "max_processes": settings.ingest_max_processes},
            )
        self._settings = settings
        self._count = count
        self._clock = clock if clock is not None else SystemClock()
        self._registry = CollectorRegistry()
        ProcessCollector(registry=self._registry)
        self._metrics = WorkerGroupMetrics.create(self._registry, count)
        self._metrics.workers.set_function(self._running)
        self._budget = RestartBudget(settings.ingest_worker_restarts_per_min, self._clock)
        self._processes: dict[int, asyncio.subprocess.Process] = {}
        self._group = GroupMetrics()
        self._scraping = asyncio.Lock()
        self._stop = asyncio.Event()
        self._run_dir = Path()  # made by run(): a private directory (mode 0700)

    async def run(self) -> int:
        """Run the group until a signal; the exit status for the command."""
        self._run_dir = Path(tempfile.mkdtemp(prefix="relay-ingest-"))
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal)
        unready_file(self._run_dir).write_text("starting", encoding="utf-8")
        runner = web.AppRunner(exposition_app(self._exposition), access_log=None)
        await runner.setup()
        await web.UnixSite(runner, str(group_socket(self._run_dir))).start()
        watchers: list[asyncio.Task[None]] = []
        failed: int | None = None
        try:
            for slot in range(self._count):
                await self._spawn(slot)
            failed = await self._started()
            if failed is None:
                log.info("workers listening", extra={"workers": self._count})
                watchers = [asyncio.create_task(self._watch(slot)) for slot in range(self._count)]
                watchers.append(asyncio.create_task(self._follow_readiness()))
                await self._stop.wait()
        finally:
            for watcher in watchers:
                watcher.cancel()
            codes = await self._stop_workers()
            await runner.cleanup()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            shutil.rmtree(self._run_dir, ignore_errors=True)
        log.info("stopped", extra={"exit_codes": codes})
        if failed is not None:
            return failed
        return 0 if all(code == 0 for code in codes) else 1

    def _on_signal(self) -> None:
        if self._stop.is_set():  # a second signal: the workers skip the rest of the grace
            self._signal_all(signal.SIGTERM)
        self._stop.set()

    def _signal_all(self, signum: int) -> None:
        for process in self._processes.values():
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signum)

    async def _spawn(self, slot: int) -> None:
        worker_socket(self._run_dir, slot).unlink(missing_ok=True)
        env = {
            **os.environ,
            "RELAY_INGEST_HOST": self._settings.ingest_host,
            "RELAY_INGEST_PORT": str(self._settings.ingest_port),
        }
        self._processes[slot] = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "relay",
            "ingest",
            "--worker-slot",
            str(slot),
            "--worker-count",
            str(self._count),
            "--worker-dir",
            str(self._run_dir),
            env=env,
            # Signals reach workers through the supervisor only (a terminal's Ctrl-C
            # goes to its whole process group): one order, and no worker exiting on
            # its own that the supervisor would take for a crash.
            start_new_session=True,
        )

    def _running(self) -> float:
        return float(
            sum(
                process.returncode is None and worker_socket(self._run_dir, slot).exists()
                for slot, process in self._processes.items()
            )
        )

    async def _started(self) -> int | None:
        """None once every worker listens (or a signal came first); else the status of
        the worker that exited during start."""
        while not self._stop.is_set():
            for slot, process in self._processes.items():
                if process.returncode is not None:
                    log.error(
                        "a worker exited during start: stopping the group",
                        extra={"worker": slot, "exit_code": process.returncode},
                    )
                    return process.returncode or 1
            if self._running() == self._count:
                return None
            await self._clock.sleep(START_POLL_S)
        return None

    async def _watch(self, slot: int) -> None:
        """Start the worker again whenever it exits unasked, within the restart bound."""
        while True:
            process = self._processes[slot]
            code = await process.wait()
            if self._stop.is_set():
                return
            wait = self._budget.wait_s()
            log.error(
                "a worker exited: starting it again",
                extra={"worker": slot, "exit_code": code, "pid": process.pid, "after_s": wait},
            )
            if wait > 0:
                self._metrics.restarts_delayed.inc()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._stop.wait()
                if self._stop.is_set():
                    return
            self._budget.record()
            self._metrics.restarts.inc()
            await self._spawn(slot)

    async def _stop_workers(self) -> list[int | None]:
        """SIGTERM to the workers running; their exit statuses (a worker that had
        crashed and was waiting for its restart was reported then, not here)."""
        running = [p for p in self._processes.values() if p.returncode is None]
        self._signal_all(signal.SIGTERM)
        bound = self._settings.shutdown_grace_s + self._settings.shutdown_timeout_s
        try:
            async with asyncio.timeout(bound + STOP_MARGIN_S):
                await asyncio.gather(*(process.wait() for process in running))
        except TimeoutError:
            log.error(  # noqa: TRY400 (the timeout is ours, its traceback says nothing)
                "workers still running past the shutdown bound: killed"
            )
            self._signal_all(signal.SIGKILL)
            await asyncio.gather(*(process.wait() for process in running))
        return [process.returncode for process in running]

    async def _exposition(self) -> bytes:
        async with self._scraping:
            slots = list(self._processes.items())
            texts = await asyncio.gather(*(self._scrape(slot) for slot, _ in slots))
            scrapes = {
                str(slot): Scrape(process.pid, text)
                for (slot, process), text in zip(slots, texts, strict=True)
            }
            scrapes["supervisor"] = Scrape(os.getpid(), generate_latest(self._registry).decode())
            return self._group.merge(scrapes)

    async def _follow_readiness(self) -> None:
        """Keep the unready file true (``relay.ingest.seat.unready_file``)."""
        path = unready_file(self._run_dir)
        while True:
            reason = await self._unready()
            if reason is None:
                path.unlink(missing_ok=True)
            else:
                staged = path.with_suffix(".new")
                staged.write_text(reason, encoding="utf-8")
                staged.replace(path)  # atomic: a reader never sees half a reason
            await self._clock.sleep(READINESS_POLL_S)

    async def _unready(self) -> str | None:
        """None when every listening worker says it is ready; else which is not, and
        why. A worker not running (crashed, waiting for its restart) gets no
        connections, so it does not count."""
        listening = [
            slot
            for slot, process in self._processes.items()
            if process.returncode is None and worker_socket(self._run_dir, slot).exists()
        ]
        if not listening:
            return "no worker listening"
        answers = await asyncio.gather(*(self._ready(slot) for slot in listening))
        reasons = [
            f"worker {slot}: {reason}"
            for slot, reason in zip(listening, answers, strict=True)
            if reason
        ]
        return "; ".join(reasons) or None

    async def _ready(self, slot: int) -> str | None:
        try:
            status, text = await ask(worker_socket(self._run_dir, slot), "/readyz")
        except (aiohttp.ClientError, OSError, TimeoutError):
            return "does not answer"
        return None if status == 200 else text

    async def _scrape(self, slot: int) -> str | None:
        try:
            return await fetch_exposition(worker_socket(self._run_dir, slot))
        except (aiohttp.ClientError, TimeoutError, OSError):
            return None  # starting, stopping or stuck: its last counts stay in the sums
