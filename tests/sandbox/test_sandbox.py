"""The sandbox answers as the upstream would, and keeps an honest ledger."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from relay.clock import ManualClock
from relay.sandbox import SandboxState
from relay.sandbox.ledger import Ledger
from tests.conftest import Client
from tests.test_events import VALID


async def bearer(sandbox: Client, token: str = "tok", secret: str = "sec") -> str:
    response = await sandbox.post("/authenticate", json={"token": token, "secret": secret})
    assert response.status == 200
    data = (await response.json())["data"]
    assert data["expiresIn"] == 60.0
    return str(data["accessToken"])


async def post(sandbox: Client, path: str, body: Any, token: str | None, key: str = "k1") -> Any:
    headers = {"Idempotency-Key": key}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return await sandbox.post(path, json=body, headers=headers)


async def faults(sandbox: Client, **changes: Any) -> Any:
    response = await sandbox.post("/_sandbox/faults", json=changes)
    assert response.status == 200, await response.text()
    return await response.json()


async def ledger(sandbox: Client) -> Any:
    return await (await sandbox.get("/_sandbox/ledger")).json()


@pytest.mark.parametrize("name", sorted(VALID))
async def test_each_event_endpoint_accepts_and_records(sandbox: Client, name: str) -> None:
    token = await bearer(sandbox)
    response = await post(sandbox, f"/{name}", VALID[name], token, key=f"id-{name}")
    if name == "app-start":
        assert response.status == 200
        assert await response.json() == {"appId": 77}
    else:
        assert response.status == 204
    book = await ledger(sandbox)
    assert book["total"] == 1
    assert book["entries"][0]["path"] == f"/{name}"
    assert book["entries"][0]["body"] == VALID[name]
    assert book["entries"][0]["idempotencyKey"] == f"id-{name}"
    assert book["entries"][0]["credential"] == "tok"


async def test_authentication_failures(sandbox: Client) -> None:
    assert (
        await sandbox.post("/authenticate", json={"token": "tok", "secret": "no"})
    ).status == 401
    assert (await sandbox.post("/authenticate", json={"token": "x"})).status == 400
    missing = await post(sandbox, "/play", VALID["play"], None)
    assert (missing.status, (await missing.json())["failureCode"]) == (401, "MISSING_HEADERS")
    bad = await post(sandbox, "/play", VALID["play"], "forged")
    assert (bad.status, (await bad.json())["failureCode"]) == (401, "AUTHENTICATION_FAILED")
    assert (await ledger(sandbox))["total"] == 0


async def test_tokens_expire_by_lifetime_and_on_command(
    sandbox: Client, sandbox_clock: ManualClock
) -> None:
    token = await bearer(sandbox)
    sandbox_clock.advance(59)
    assert (await post(sandbox, "/play", VALID["play"], token)).status == 204
    sandbox_clock.advance(1)
    assert (await post(sandbox, "/play", VALID["play"], token)).status == 401
    token = await bearer(sandbox)
    await faults(sandbox, expire_tokens=True)
    assert (await post(sandbox, "/play", VALID["play"], token)).status == 401


async def test_validation_uses_the_event_table_strictly(sandbox: Client) -> None:
    token = await bearer(sandbox)
    response = await post(sandbox, "/play", {**VALID["play"], "clipId": "x"}, token)
    answer = await response.json()
    assert (response.status, answer["failureCode"], answer["errorData"]) == (
        400,
        "VALIDATION_ERROR",
        {"field": "clipId"},
    )
    response = await post(sandbox, "/play", {**VALID["play"], "extra": 1}, token)
    assert (await response.json())["failureCode"] == "INVALID_PARAMETERS"
    book = await ledger(sandbox)
    assert book["total"] == 0
    assert book["refusedTotal"] == 2


async def test_injected_errors_on_chosen_paths(sandbox: Client) -> None:
    token = await bearer(sandbox)
    await faults(
        sandbox,
        error_rate=1.0,
        error_status=503,
        error_code="SERVICE_UNAVAILABLE",
        error_paths=["/play"],
    )
    response = await post(sandbox, "/play", VALID["play"], token)
    assert (response.status, (await response.json())["failureCode"]) == (503, "SERVICE_UNAVAILABLE")
    assert (await post(sandbox, "/add", VALID["add"], token)).status == 204


async def test_outage_unavailable_and_reset(sandbox: Client) -> None:
    token = await bearer(sandbox)
    await faults(sandbox, outage="unavailable")
    assert (await post(sandbox, "/play", VALID["play"], token)).status == 503
    assert (await sandbox.post("/_sandbox/reset")).status == 200
    assert (await post(sandbox, "/play", VALID["play"], token)).status == 204


async def test_rate_limit_answers_429_with_retry_after(
    sandbox: Client, sandbox_clock: ManualClock
) -> None:
    token = await bearer(sandbox)
    await faults(sandbox, rate_limit=3, retry_after_s=2)
    statuses = [(await post(sandbox, "/play", VALID["play"], token)).status for _ in range(5)]
    assert statuses == [204, 204, 204, 429, 429]
    limited = await post(sandbox, "/play", VALID["play"], token)
    assert limited.headers["Retry-After"] == "2"
    sandbox_clock.advance(1.0)
    assert (await post(sandbox, "/play", VALID["play"], token)).status == 204
    other = await bearer(sandbox, "other", "pw")  # limits are per credential
    assert (await post(sandbox, "/play", VALID["play"], other)).status == 204


async def test_no_rights_clips_and_music_check(sandbox: Client) -> None:
    token = await bearer(sandbox)
    await faults(sandbox, no_rights_clips=[123])
    response = await post(sandbox, "/play", VALID["play"], token)
    answer = await response.json()
    assert answer["success"] is False
    assert answer["failureCode"] == "NO_STREAMING_RIGHTS"
    assert (await post(sandbox, "/add", VALID["add"], token)).status == 204  # only /play checks
    check = await sandbox.post(
        "/music-check", json={"clipIds": [1, 123, 5]}, headers={"Authorization": f"Bearer {token}"}
    )
    assert (await check.json())["data"]["notPlayable"] == [123]


async def test_revoked_credentials_refuse_everything(sandbox: Client) -> None:
    token = await bearer(sandbox)
    await faults(sandbox, revoked=True)
    assert (await post(sandbox, "/play", VALID["play"], token)).status == 401
    assert (
        await sandbox.post("/authenticate", json={"token": "tok", "secret": "sec"})
    ).status == 401


async def test_duplicates_are_counted_by_idempotency_key(sandbox: Client) -> None:
    token = await bearer(sandbox)
    for key in ("a", "b", "a", "a"):
        await post(sandbox, "/play", VALID["play"], token, key=key)
    book = await ledger(sandbox)
    assert (book["total"], book["duplicates"]) == (4, 2)


@pytest.mark.parametrize(
    "changes",
    [
        {"nope": 1},
        {"error_rate": 2},
        {"error_code": "WHATEVER"},
        {"outage": "refuse"},
        {"latency_ms": "x"},
    ],
)
async def test_bad_fault_requests_are_refused(sandbox: Client, changes: dict[str, Any]) -> None:
    response = await sandbox.post("/_sandbox/faults", json=changes)
    assert response.status == 400
    assert (await response.json())["failureCode"] == "VALIDATION_ERROR"


async def test_faults_are_visible(sandbox: Client, sandbox_state: SandboxState) -> None:
    await faults(sandbox, latency_ms=5)
    assert (await (await sandbox.get("/_sandbox/faults")).json())["latency_ms"] == 5.0
    assert sandbox_state.faults.latency_ms == 5.0


def test_a_ledger_kept_in_a_file_outlives_its_process(tmp_path: Path) -> None:
    journal = tmp_path / "ledger.jsonl"
    first = Ledger.kept_in(journal)
    first.accept("/play", {"clipId": 1}, "k1", "tok", 1.0)
    first.accept("/play", {"clipId": 2}, "k2", "tok", 2.0)
    first.close()  # as a kill -9 would leave it: every acceptance already written
    # what a process started again on the same file (after a kill -9) knows
    again = Ledger.kept_in(journal)
    assert [entry["idempotencyKey"] for entry in again.accepted] == ["k1", "k2"]
    again.accept("/play", {"clipId": 1}, "k1", "tok", 3.0)
    assert (again.duplicates, again.counts["/play"]) == (1, 3)
    again.clear()
    again.close()
    cleared = Ledger.kept_in(journal)
    assert cleared.accepted == []
    cleared.close()
