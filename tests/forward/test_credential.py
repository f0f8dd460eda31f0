"""Forward's share of a credential leaves ingest its upstream rate (issue 11 §2.4)."""

from __future__ import annotations

from relay.clock import ManualClock
from relay.config import Settings
from relay.forward.credential import Credential, ingest_reserve


def test_forward_shares_the_budget_minus_what_ingest_may_use() -> None:
    settings = Settings(ingest_upstream_rps=5.0, ingest_max_processes=4)
    reserve = ingest_reserve(settings)
    assert reserve == 20.0
    credential = Credential("c", 200.0, ManualClock(), reserved_rps=reserve)
    assert credential.share(3, 3) == 180.0
    assert credential.share(1, 3) == 60.0
    # Every forward worker's share plus every ingest process's rate: the budget.
    assert credential.share(3, 3) + settings.ingest_upstream_rps * 4 == 200.0
