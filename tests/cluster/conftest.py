from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.brokers import ROOT, Cluster

# Beside the suite's broker (RELAY_TEST_KAFKA_PORT) and the per-test one (+100): the
# cluster's nodes listen on +300, +310 and +320 (controllers one above each).
CLUSTER_PORT = int(os.environ.get("RELAY_TEST_KAFKA_PORT", "19092")) + 300


@pytest.fixture(scope="package")
def cluster() -> Iterator[Cluster]:
    """Three KRaft nodes (a 3-voter quorum), fresh for these tests; every node is
    stopped when they are done (not at the end of the whole suite: three brokers
    idling beside the others would slow every later test), by the pids kafkactl
    recorded, whatever happened."""
    cluster = Cluster(CLUSTER_PORT, ROOT / ".cache" / "kafka" / f"test-cluster-{CLUSTER_PORT}")
    cluster.down()  # a run killed before its teardown left nodes behind
    cluster.wipe()
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.down()
        cluster.wipe()
