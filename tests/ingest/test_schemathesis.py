"""Schemathesis, the OpenAPI-driven fuzzer, against the live front door: `relay ingest`
as a process on real Kafka, with a tenants file and a key, every operation of
/openapi.json, positive and negative data, every check Schemathesis has (among them
positive_data_acceptance, negative_data_rejection, not_a_server_error,
response_schema_conformance, status_code_conformance, ignored_auth,
unsupported_method). Any finding fails the test; so do fewer than 1,000 requests,
counted both by Schemathesis and by the relay's own request counter.

Schemathesis gets the key as X-Relay-Key and is told not to generate values for the
security schemes itself (--generation-with-security-parameters false): the document
says either scheme suffices, and with a valid X-Relay-Key it would add a random
Authorization header (e.g. "Basic x", which the relay rightly ignores) and call the
success "ignored auth". ignored_auth still runs: it removes the key, and sends a wrong
key in each scheme in turn, and expects 401 each time. The key has no inbound limit.
One worker: two threads of Hypothesis describing strategies hit a CPython 3.11 bug in
ast.parse ("AST constructor recursion depth mismatch").

POST /batch answers an event that does not match its schema with that event's refusal
among the batch's results, in a 200 (the other events are not held back by it), so for
that one operation negative_data_rejection also expects 200 (CONFIG below); a body
that is not a batch at all still gets its 4xx, and every other check runs unchanged,
the 200's schema (one result per event: an id or the failure envelope) included.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from relay.config import Settings
from relay.tenants import hash_key, new_key
from tests.stack import free_port, terminate, wait_http

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(240)]

ST = Path(sys.executable).parent / "st"
MAX_EXAMPLES = 100  # per operation and phase: about 1,200 requests, about 30 s
SEED = int(os.environ.get("RELAY_SCHEMATHESIS_SEED", "20261126"))
RUN_BOUND_S = 180.0  # Schemathesis' whole run; a hang fails here, not at the suite's end
CONFIG = """
[[operations]]
include-path = "/batch"
checks.negative_data_rejection.expected-statuses = [
  "200", "400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"
]
"""


async def requests_counted(url: str) -> dict[str, float]:
    """relay_ingest_requests_total by status, from the relay's /metrics."""
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as response:
        text = await response.text()
    counted: dict[str, float] = {}
    for status, value in re.findall(
        r'^relay_ingest_requests_total\{[^}]*status="(\d+)"[^}]*\} (\S+)$', text, re.MULTILINE
    ):
        counted[status] = counted.get(status, 0.0) + float(value)
    return counted


@pytest.mark.parametrize(
    "reject_unknown", [False, True], ids=["unknown-dropped", "unknown-refused"]
)
async def test_schemathesis_finds_nothing_in_a_thousand_requests(
    kafka_settings: Settings, tmp_path: Path, report: object, reject_unknown: bool
) -> None:
    """Once as deployed by default, once with RELAY_REJECT_UNKNOWN_FIELDS=true, which
    turns the document's additionalProperties to false."""
    key = new_key()
    tenants = tmp_path / "tenants.toml"
    tenants.write_text(
        f"""
[tenants.fuzz]
upstream_token = "tok"
upstream_secret = "sec"
app_id = 4242

[[tenants.fuzz.keys]]
id = "schemathesis"
sha256 = "{hash_key(key)}"
"""
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    popen = subprocess.Popen(
        [sys.executable, "-m", "relay", "ingest"],
        env={
            **os.environ,
            "RELAY_KAFKA_BOOTSTRAP": kafka_settings.kafka_bootstrap,
            "RELAY_TOPIC_PREFIX": kafka_settings.topic_prefix,
            "RELAY_TOPIC_PARTITIONS": "1",
            "RELAY_INGEST_PORT": str(port),
            "RELAY_TENANTS_FILE": str(tenants),
            "RELAY_LOG_LEVEL": "ERROR",
            "RELAY_REJECT_UNKNOWN_FIELDS": "true" if reject_unknown else "false",
        },
    )
    try:
        await wait_http(f"{url}/readyz", process=popen)
        before = await requests_counted(url)
        config = tmp_path / "schemathesis.toml"
        config.write_text(CONFIG)
        command = [
            str(ST),
            f"--config-file={config}",
            "run",
            f"{url}/openapi.json",
            "--checks=all",
            "--mode=all",
            f"--max-examples={MAX_EXAMPLES}",
            f"--seed={SEED}",
            "--workers=1",
            "--generation-with-security-parameters=false",
            "--generation-database=none",
            f"--header=X-Relay-Key: {key}",
            "--request-timeout=10",
            "--continue-on-failure",
            "--no-color",
            "--report=junit",
            f"--report-junit-path={tmp_path / 'junit.xml'}",
        ]
        run = await asyncio.to_thread(
            subprocess.run,
            command,
            cwd=tmp_path,  # no schemathesis.toml of anyone's, reports kept here
            capture_output=True,
            text=True,
            timeout=RUN_BOUND_S,
        )
        after = await requests_counted(url)
    finally:
        terminate(popen)

    output = run.stdout + run.stderr
    summary = output[output.rfind("SUMMARY") :]
    assert run.returncode == 0, output[-20000:]
    assert "No issues found" in summary, summary
    assert re.search(r"Tested: 8\b", summary), summary  # every event type's, and /batch
    generated = re.search(r"(\d+) generated, (\d+) passed", summary)
    assert generated, summary
    cases, passed = int(generated[1]), int(generated[2])
    assert cases == passed >= 1000, summary
    served = {status: after.get(status, 0.0) - before.get(status, 0.0) for status in after}
    total = sum(served.values())
    assert total >= 1000, served
    # Both kinds of data reached the door: accepted events and refused ones.
    for status in ("200", "204", "400", "401", "405", "415"):
        assert served.get(status, 0) > 0, served
    junit = (tmp_path / "junit.xml").read_text()
    assert 'failures="0"' in junit, junit
    assert 'errors="0"' in junit, junit
    report(  # type: ignore[operator]
        f"schemathesis (seed {SEED}, unknown fields {'refused' if reject_unknown else 'dropped'}):"
        f" {cases} test cases generated, 0 findings; the front "
        f"door answered {total:.0f} requests: "
        + ", ".join(f"{status}: {count:.0f}" for status, count in sorted(served.items()) if count)
    )
