"""A real load balancer for the rolling-restart tests: HAProxy (Debian's package) on
loopback, health-checking /readyz, configured never to resend a request."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tests.stack import free_port, terminate, wait_http

# No retry and no redispatch: a request HAProxy already sent is never sent again, so
# a drop shows as a failure (and cannot become a hidden duplicate).
_CONFIG = """\
global
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 10s
    retries 0
    retry-on none
    no option redispatch
frontend front
    bind 127.0.0.1:{port}
    default_backend relay
backend relay
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    # A check every 100 ms and one 503 takes a server out (readiness turns 503 at
    # SIGTERM); but a check that merely waits for a busy event loop is not a 503: it
    # gets a second, as a Kubernetes probe's default timeout does (without this,
    # the check times out at the 100 ms interval and takes out the last server).
    timeout check 1s
    default-server inter 100ms fall 1 rise 2
{servers}
"""


@dataclass
class HAProxy:
    folder: Path
    backends: list[str]  # host:port of each server
    port: int = 0
    popen: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, bound: float = 30.0) -> None:
        binary = shutil.which("haproxy")
        assert binary, "HAProxy is not installed: `make test` installs Debian's package"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        servers = "\n".join(
            f"    server s{number} {backend} check" for number, backend in enumerate(self.backends)
        )
        config = self.folder / "haproxy.cfg"
        config.write_text(_CONFIG.format(port=self.port, servers=servers))
        self.log = (self.folder / "haproxy.log").open("wb")
        self.popen = subprocess.Popen(
            [binary, "-db", "-f", str(config)], stdout=self.log, stderr=subprocess.STDOUT
        )
        await wait_http(
            f"{self.url}/openapi.json",  # through HAProxy to a backend it checked
            bound=bound,
            process=self.popen,
            died=(self.folder / "haproxy.log").read_text,
        )

    def stop(self) -> None:
        terminate(self.popen, bound=10)
        if self.log is not None:
            self.log.close()
