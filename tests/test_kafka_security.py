"""The relay through a secured Kafka: the project's own broker with a SASL_SSL listener
(SCRAM-SHA-256, a CA and broker certificate made here), ingest -> forward -> sandbox
through it; a wrong password or an untrusted certificate stops a process at start
with exit code 2 and one line naming the setting."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from relay.bench.backlog import example_bodies
from tests.brokers import KAFKACTL
from tests.stack import Stack
from tests.tls import Authority

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PORT = int(os.environ.get("RELAY_TEST_KAFKA_PORT", "19092")) + 400
USER, PASSWORD = "relay", "relay-secret"
START_BOUND_S = 20.0  # from `relay ingest` to its exit on a refusal, Python start included

# Clients (and the broker's own inter-broker link) on SASL_SSL; the controller stays
# plaintext on loopback. No authorizer: an authenticated user may do anything.
TEMPLATE = """\
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:@CONTROLLER_PORT@
listeners=SASL_SSL://127.0.0.1:@PORT@,CONTROLLER://127.0.0.1:@CONTROLLER_PORT@
advertised.listeners=SASL_SSL://127.0.0.1:@PORT@
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-256
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-256
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=\
org.apache.kafka.common.security.scram.ScramLoginModule required \
username="broker" password="broker-secret";
ssl.keystore.type=PEM
ssl.keystore.location=@STATE_DIR@/broker-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=@STATE_DIR@/ca.pem
log.dirs=@DATA_DIR@
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
"""


@dataclass(frozen=True)
class SecuredBroker:
    bootstrap: str
    ca: Path
    stranger_ca: Path
    password_file: Path

    def env(self, **overrides: str) -> dict[str, str]:
        """The relay's settings for this broker (the password from its file)."""
        return {
            "RELAY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "RELAY_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "RELAY_KAFKA_USERNAME": USER,
            "RELAY_KAFKA_PASSWORD_FILE": str(self.password_file),
            "RELAY_KAFKA_CA_FILE": str(self.ca),
            **overrides,
        }


def _kafkactl(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KAFKACTL), command], env={**os.environ, **env}, capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    folder = tmp_path_factory.mktemp("secured-kafka")
    state = folder / "state"
    state.mkdir()
    ca = Authority.create(state, "ca")
    cert, key = ca.issue(folder, "broker", "IP:127.0.0.1,DNS:localhost")
    (state / "broker-keystore.pem").write_text(key.read_text() + cert.read_text())
    template = folder / "sasl-ssl.properties.in"
    template.write_text(TEMPLATE)
    password_file = folder / "kafka-password"
    password_file.write_text(PASSWORD + "\n")
    env = {
        "KAFKA_PORT": str(PORT),
        "KAFKA_STATE_DIR": str(state),
        "KAFKA_TEMPLATE": str(template),
        "KAFKA_FORMAT_ARGS": f"--add-scram SCRAM-SHA-256=[name={USER},password={PASSWORD}] "
        "--add-scram SCRAM-SHA-256=[name=broker,password=broker-secret]",
    }
    try:
        started = _kafkactl("up", env)
        assert started.returncode == 0, f"kafkactl up (SASL_SSL) failed:\n{started.stderr}"
        yield SecuredBroker(
            f"127.0.0.1:{PORT}",
            ca.cert,
            Authority.create(folder / "stranger", "stranger").cert,
            password_file,
        )
    finally:
        _kafkactl("down", env)  # also when `up` failed half way: the pid file says what ran


@pytest.fixture
async def secured_stack(secured: SecuredBroker, prefix: str) -> AsyncIterator[Stack]:
    stack = Stack(secured.bootstrap, prefix, env=secured.env())
    await stack.start("sandbox")
    try:
        yield stack
    finally:
        await stack.stop_all()


async def test_every_accepted_event_reaches_the_sandbox_through_sasl_ssl(
    secured_stack: Stack, secured: SecuredBroker
) -> None:
    ingest = await secured_stack.start("ingest")
    await secured_stack.start("forward", RELAY_UPSTREAM_BUDGET_RPS="0")
    ids = await secured_stack.post_events(ingest, example_bodies(700))  # the seven types
    assert len(set(ids)) == 700
    ledger = await secured_stack.wait_ledger(set(ids), bound=120)
    assert {entry["idempotencyKey"] for entry in ledger["entries"]} >= set(ids)
    # The operator's tools use the same settings.
    inspect = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "relay", "dlq", "inspect"],
        env=secured_stack.base_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert inspect.returncode == 0, inspect.stderr
    assert inspect.stdout.startswith(f"0 dead letters on {secured_stack.prefix}.dlq")


@pytest.mark.parametrize("process", ["ingest", "forward"])
@pytest.mark.parametrize(
    ("change", "setting"),
    [
        ({"RELAY_KAFKA_PASSWORD": "not-the-password"}, "RELAY_KAFKA_PASSWORD"),
        ({"RELAY_KAFKA_CA_FILE": "stranger"}, "RELAY_KAFKA_CA_FILE"),
    ],
    ids=["wrong-password", "untrusted-ca"],
)
def test_a_refusal_stops_the_process_at_start_with_one_line_naming_the_setting(
    secured: SecuredBroker, prefix: str, process: str, change: dict[str, str], setting: str
) -> None:
    overrides = dict(change)
    if overrides.get("RELAY_KAFKA_CA_FILE") == "stranger":
        overrides["RELAY_KAFKA_CA_FILE"] = str(secured.stranger_ca)
    env = Stack(secured.bootstrap, prefix).base_env(**secured.env(**overrides))
    if "RELAY_KAFKA_PASSWORD" in overrides:
        del env["RELAY_KAFKA_PASSWORD_FILE"]
    began = time.monotonic()
    finished = subprocess.run(
        [sys.executable, "-m", "relay", process, "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=START_BOUND_S,
    )
    took = time.monotonic() - began
    lines = finished.stderr.strip().splitlines()
    assert finished.returncode == 2, finished.stderr
    assert len(lines) == 1, finished.stderr
    assert setting in lines[0]
    assert "Traceback" not in finished.stderr
    assert took < START_BOUND_S
