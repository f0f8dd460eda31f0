"""Real Kafka brokers for the tests (one node, or a replicated cluster), started and
stopped through deploy/kafka/kafkactl."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KAFKACTL = ROOT / "deploy" / "kafka" / "kafkactl"


@dataclass
class Broker:
    port: int
    state_dir: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self, *command: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KAFKA_PORT": str(self.port), "KAFKA_STATE_DIR": str(self.state_dir)}
        return subprocess.run(
            [str(KAFKACTL), *command], env=env, capture_output=True, text=True, timeout=180
        )

    def running(self) -> bool:
        return self._run("status").returncode == 0

    def up(self) -> None:
        result = self._run("up")
        if result.returncode != 0:
            raise RuntimeError(f"kafkactl up failed on port {self.port}:\n{result.stderr}")

    def down(self) -> None:
        result = self._run("down")
        if result.returncode != 0:
            raise RuntimeError(f"kafkactl down failed on port {self.port}:\n{result.stderr}")

    def kill9(self) -> None:
        """SIGKILL the broker (by the pid kafkactl recorded); ``up`` starts it again on
        the same data, which it then recovers as after a crash."""
        result = self._run("stop-node", "1", "--kill")
        if result.returncode != 0:
            raise RuntimeError(
                f"kafkactl stop-node --kill failed on port {self.port}:\n{result.stderr}"
            )

    def wipe(self) -> None:
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def freeze(self) -> None:
        """SIGSTOP the broker: connections stay open and requests wait unanswered (a
        stalled broker, not a dead one) until ``thaw``."""
        os.kill(self._pid(), signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self._pid(), signal.SIGCONT)

    def _pid(self) -> int:
        return int((self.state_dir / "kafka.pid").read_text().strip())


@dataclass
class Cluster:
    """A replicated KRaft cluster of ``nodes`` combined broker+controllers (kafkactl's
    cluster mode): node N on ``port + 10 * (N - 1)``, its state in ``state_dir/node-N``."""

    port: int
    state_dir: Path
    nodes: int = 3

    @property
    def ports(self) -> list[int]:
        return [self.port + 10 * index for index in range(self.nodes)]

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def _run(self, *command: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "KAFKA_NODES": str(self.nodes),
            "KAFKA_PORT": str(self.port),
            "KAFKA_STATE_DIR": str(self.state_dir),
        }
        return subprocess.run(
            [str(KAFKACTL), *command], env=env, capture_output=True, text=True, timeout=180
        )

    def _check(self, *command: str) -> None:
        result = self._run(*command)
        if result.returncode != 0:
            raise RuntimeError(f"kafkactl {' '.join(command)} failed:\n{result.stderr}")

    def running(self) -> bool:
        """Every node runs and answers."""
        return self._run("status").returncode == 0

    def up(self) -> None:
        self._check("up")

    def down(self) -> None:
        self._check("down")

    def stop_node(self, node: int, *, kill: bool = False) -> None:
        """Stop node ``node`` (1-based): SIGTERM, or SIGKILL with ``kill``."""
        self._check("stop-node", str(node), *(["--kill"] if kill else []))

    def start_node(self, node: int) -> None:
        """Start a stopped node again; returns once it answers."""
        self._check("start-node", str(node))

    def wipe(self) -> None:
        shutil.rmtree(self.state_dir, ignore_errors=True)
