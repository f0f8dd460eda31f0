"""A real Prometheus (Debian's package) on loopback, for tests that prove the
dashboard's queries and the alert rules against the real stack."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp
import yaml

from tests.stack import free_port, terminate, wait_http


@dataclass
class Prometheus:
    """One Prometheus server with its own config and data folder under ``folder``."""

    folder: Path
    targets: dict[str, str]  # scrape job -> host:port
    rules: str  # the text of a rule file
    port: int = 0
    popen: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, bound: float = 60.0) -> None:
        binary = shutil.which("prometheus")
        assert binary, "Prometheus is not installed: `make test` installs Debian's package"
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "alerts.yml").write_text(self.rules)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["alerts.yml"],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [target]}]}
                for job, target in self.targets.items()
            ],
        }
        (self.folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.log = (self.folder / "prometheus.log").open("wb")
        self.popen = subprocess.Popen(
            [
                binary,
                f"--config.file={self.folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        await wait_http(
            f"{self.url}/-/ready",
            bound=bound,
            process=self.popen,
            died=(self.folder / "prometheus.log").read_text,
        )

    def stop(self) -> None:
        terminate(self.popen)
        if self.log is not None:
            self.log.close()

    async def _get(self, path: str, **params: str) -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.url}{path}", params=params) as response,
        ):
            answer = await response.json()
            assert answer["status"] == "success", answer
            return answer["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector ``expr`` evaluates to (a scalar as one sample)."""
        data = await self._get("/api/v1/query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    async def firing(self) -> set[str]:
        """Names of the alerts firing now (pending ones are not)."""
        data = await self._get("/api/v1/alerts")
        return {a["labels"]["alertname"] for a in data["alerts"] if a["state"] == "firing"}

    async def targets_up(self) -> dict[str, float]:
        return {
            sample["metric"]["job"]: float(sample["value"][1]) for sample in await self.query("up")
        }
