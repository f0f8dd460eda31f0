"""Real Kafka brokers for the tests, started and stopped through deploy/kafka/kafkactl."""

from __future__ import annotations

import os
import shutil
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

    def _run(self, command: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KAFKA_PORT": str(self.port), "KAFKA_STATE_DIR": str(self.state_dir)}
        return subprocess.run(
            [str(KAFKACTL), command], env=env, capture_output=True, text=True, timeout=180
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

    def wipe(self) -> None:
        shutil.rmtree(self.state_dir, ignore_errors=True)
