"""A real browser as a client: headless Chromium (Debian's, `make chromium`) loads a
page from another origin on loopback, which sends one event with ``fetch`` (JSON,
the key in a header: the browser preflights it) and one with
``navigator.sendBeacon`` (text/plain, the key in ``?relay_key=``). Both reach the
sandbox upstream through ingest, Kafka and forward."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from relay.tenants import hash_key, new_key
from tests.stack import Stack, free_port
from tests.test_events import VALID

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

FETCHED = {**VALID["play"], "clientId": "7d9f3c1e-0000-4000-8000-00000000fe7c", "clipId": "41"}
BEACONED = {**VALID["play"], "clientId": "7d9f3c1e-0000-4000-8000-0000000be4c0", "clipId": "42"}

PAGE = """<!doctype html>
<title>relay from a browser</title>
<pre id="results">pending</pre>
<script>
const ingest = INGEST, key = KEY;
async function run() {
  const results = {};
  try {
    const response = await fetch(ingest + "/play", {
      method: "POST",
      headers: {"Content-Type": "application/json", "X-Relay-Key": key},
      body: JSON.stringify(FETCHED),
    });
    results.fetchStatus = response.status;
    results.fetchEventId = response.headers.get("X-Relay-Event-Id");
  } catch (error) {
    results.fetchError = String(error);
  }
  results.beaconQueued = navigator.sendBeacon(
    ingest + "/play?relay_key=" + encodeURIComponent(key), JSON.stringify(BEACONED)
  );
  document.getElementById("results").textContent = JSON.stringify(results);
  await fetch("/results", {method: "POST", body: JSON.stringify(results)});
}
run();
</script>
"""


class Page:
    """The page's own server (another port: another origin), and what it reported."""

    def __init__(self) -> None:
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.results: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._html = ""

    async def serve(self, ingest_url: str, key: str) -> web.AppRunner:
        self._html = PAGE
        for name, value in {
            "INGEST": ingest_url,
            "KEY": key,
            "FETCHED": FETCHED,
            "BEACONED": BEACONED,
        }.items():
            self._html = self._html.replace(name, orjson.dumps(value).decode(), 1)
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_post("/results", self._report)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        return runner

    async def _index(self, _request: web.Request) -> web.Response:
        return web.Response(text=self._html, content_type="text/html")

    async def _report(self, request: web.Request) -> web.Response:
        if not self.results.done():
            self.results.set_result(orjson.loads(await request.read()))
        return web.Response(status=204)


@contextlib.contextmanager
def chromium(url: str, profile: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Headless Chromium on ``url``, in a process group of its own; at the end the
    group (browser, renderer, GPU and zygote processes) is stopped: SIGTERM, then
    SIGKILL."""
    binary = shutil.which("chromium")
    assert binary, "needs Debian's chromium package: make chromium"
    with log.open("wb") as output:
        popen = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                url,
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield popen
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGTERM)
        try:
            popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
        with contextlib.suppress(ProcessLookupError):  # children that outlived the browser
            os.killpg(popen.pid, signal.SIGKILL)


async def preflights_answered(ingest_url: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(ingest_url + "/metrics") as response:
        text = await response.text()
    prefix = 'relay_ingest_requests_total{path="/play",status="204",tenant="none"} '
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(lines[0].removeprefix(prefix)) if lines else 0.0


async def test_a_page_sends_events_with_fetch_and_send_beacon(stack: Stack, tmp_path: Path) -> None:
    key = new_key()
    page = Page()  # its origin (its port) goes in the tenants file, read by ingest at start
    tenants = tmp_path / "tenants.toml"
    tenants.write_text(
        f"""
[tenants.web]
upstream_token = "web-token"
upstream_secret = "web-secret"
app_id = 7
allowed_origins = ["{page.origin}"]
browser_inbound_rps = 20
[[tenants.web.keys]]
id = "page"
sha256 = "{hash_key(key)}"
browser = true
"""
    )
    stack.env["RELAY_TENANTS_FILE"] = str(tenants)
    await stack.start("sandbox", RELAY_SANDBOX_CREDENTIALS="web-token:web-secret:7")
    ingest = await stack.start("ingest")
    await stack.start("forward")
    runner = await page.serve(ingest.url, key)
    try:
        with chromium(
            page.origin + "/", tmp_path / "profile", tmp_path / "chromium.log"
        ) as browser:
            async with asyncio.timeout(120):
                while not page.results.done():
                    assert browser.poll() is None, (tmp_path / "chromium.log").read_text()[-2000:]
                    await asyncio.sleep(0.2)
            results = page.results.result()
    finally:
        await runner.cleanup()

    assert results.get("fetchStatus") == 204, results
    assert results["fetchEventId"], results  # readable: X-Relay-Event-Id is exposed
    assert results["beaconQueued"] is True, results
    assert await preflights_answered(ingest.url) >= 1  # the fetch was preflighted

    async with asyncio.timeout(120):
        while True:
            entries = (await stack.ledger())["entries"]
            fetched = [e for e in entries if e["idempotencyKey"] == results["fetchEventId"]]
            beaconed = [e for e in entries if e["body"]["clientId"] == BEACONED["clientId"]]
            if fetched and beaconed:
                break
            await asyncio.sleep(0.5)
    assert (len(fetched), len(beaconed)) == (1, 1)
    assert fetched[0]["body"]["clientId"] == FETCHED["clientId"]
    assert (fetched[0]["path"], beaconed[0]["path"]) == ("/play", "/play")
    assert (fetched[0]["body"]["clipId"], beaconed[0]["body"]["clipId"]) == (41, 42)
