"""The spike benchmark's arithmetic (relay/bench/timeline.py), without the stack."""

from __future__ import annotations

import base64
import math
import os
import subprocess
import sys
import time
from typing import Any

from relay.bench.spike import _CpuSample, median_run
from relay.bench.timeline import (
    Answer,
    Delivery,
    backlog_seconds,
    drain_rate,
    exactly_once,
    parse_vegeta_csv,
    per_second,
    percentile_ms,
    percentile_ms_per_second,
    quantile_bound_ms,
)


def _row(sent_ns: int, code: int, latency_ns: int, headers: bytes) -> str:
    encoded = base64.b64encode(headers).decode()
    return f'{sent_ns},{code},{latency_ns},120,0,"",,,7,POST,http://127.0.0.1:1/play,{encoded}'


def test_vegeta_csv_gives_times_status_and_the_relay_event_id() -> None:
    lines = [
        _row(
            1_795_000_000_250_000_000,
            204,
            3_500_000,
            b"Date: x\r\nX-Relay-Event-Id: 0190-abc\r\nContent-Length: 0\r\n\r\n",
        ),
        _row(1_795_000_001_000_000_000, 0, 2_000_000_000, b""),  # no answer at all
        # a lazy attack's end: no request
        "1795000002000000000,0,74450,0,0,no targets to attack,,,8,,,",
    ]
    first, second = parse_vegeta_csv(lines)
    assert math.isclose(first.sent_at, 1_795_000_000.25, abs_tol=1e-6)
    assert math.isclose(first.latency_ms, 3.5, abs_tol=1e-3)
    assert first.status == 204
    assert first.event_id == "0190-abc"
    assert first.accepted
    assert second.event_id is None
    assert not second.accepted


def _accepted(at: float, event_id: str = "x") -> Answer:
    return Answer(at - 0.001, at, 204, event_id)


def test_per_second_bins_by_answer_and_arrival_and_carries_the_lag() -> None:
    start = 100.0
    answers = [
        _accepted(99.5),  # before the start: counts in the lag from the first second
        _accepted(100.2),
        _accepted(100.9),
        _accepted(101.0),
        Answer(101.1, 101.2, 503, None),  # refused: not accepted, not in the lag
    ]
    deliveries = [Delivery("a", 100.5), Delivery("b", 102.7), Delivery("c", 102.9)]
    timeline = per_second(answers, deliveries, start)
    assert timeline.accepted == [2, 1, 0]
    assert timeline.delivered == [1, 0, 2]
    assert timeline.lag == [2, 3, 1]
    assert timeline.seconds == 3


def test_drain_rate_averages_only_seconds_that_began_with_a_budget_of_backlog() -> None:
    from relay.bench.timeline import Timeline

    # lag at the end of each second; delivered per second. Seconds 2..5 began with
    # >= 500 waiting for two seconds running; second 6 began with 300 (supply-bound);
    # the last second is partial and never counts.
    timeline = Timeline(
        start=0.0,
        accepted=[4000, 4000, 0, 0, 0, 0, 0, 0],
        delivered=[450, 500, 510, 490, 500, 500, 300, 0],
        lag=[3550, 7050, 6540, 6050, 5550, 300, 0, 0],
    )
    assert backlog_seconds(timeline, 500) == [510, 490, 500, 500]  # seconds 2, 3, 4, 5
    rate, seconds = drain_rate(timeline, 500)
    assert seconds == 4
    assert rate == (510 + 490 + 500 + 500) / 4
    # From second 4 on (once the intake stopped, say): seconds 4 and 5.
    assert drain_rate(timeline, 500, first=4) == ((500 + 500) / 2, 2)


def test_drain_rate_without_a_backlog_is_not_a_number() -> None:
    from relay.bench.timeline import Timeline

    rate, seconds = drain_rate(Timeline(0.0, [10] * 5, [10] * 5, [0] * 5), 500)
    assert math.isnan(rate)
    assert seconds == 0


def test_exactly_once_counts_lost_duplicated_and_unexpected_deliveries() -> None:
    matched = exactly_once(["a", "b", "c", "d"], ["a", "b", "b", "b", "c", "z", None])
    assert matched == {"lost": 1, "duplicates": 2, "unexpected": 2}
    assert exactly_once(["a", "b"], ["b", "a"]) == {"lost": 0, "duplicates": 0, "unexpected": 0}


def test_percentiles_are_the_nearest_rank() -> None:
    answers = [Answer(0.0, ms / 1000, 204, None) for ms in range(1, 201)]
    assert percentile_ms(answers, 0.99) == 198.0  # rank ceil(0.99 x 200) = 198
    assert percentile_ms(answers, 0.50) == 100.0
    assert math.isnan(percentile_ms([], 0.99))


def test_percentiles_per_second_of_sending() -> None:
    answers = [
        Answer(10.0, 10.005, 204, None),
        Answer(10.9, 10.930, 204, None),
        Answer(12.5, 12.700, 204, None),  # nothing sent in second 1
    ]
    per_second = percentile_ms_per_second(answers, 0.99)
    assert [round(ms) for ms in per_second[::2]] == [30, 200]
    assert math.isnan(per_second[1])
    assert percentile_ms_per_second([], 0.99) == []


INF = math.inf


def test_the_quantile_bound_is_the_first_bucket_holding_that_share_of_the_phase() -> None:
    before = {0.005: 0.0, 0.01: 0.0, 0.025: 0.0, INF: 0.0}
    after = {0.005: 90.0, 0.01: 99.0, 0.025: 100.0, INF: 100.0}
    assert quantile_bound_ms(before, after, 0.99) == 10.0
    assert quantile_bound_ms(before, after, 0.90) == 5.0
    one_more_late = {0.005: 90.0, 0.01: 98.0, 0.025: 100.0, INF: 100.0}
    assert quantile_bound_ms(before, one_more_late, 0.99) == 25.0


def test_the_quantile_bound_counts_only_what_was_observed_between_the_scrapes() -> None:
    # 10,000 fast requests before the phase, then 100 slower ones in it: counted from
    # the start, the p99 would be in the first bucket.
    before = {0.005: 10000.0, 0.05: 10000.0, INF: 10000.0}
    after = {0.005: 10000.0, 0.05: 10100.0, INF: 10100.0}
    assert quantile_bound_ms(before, after, 0.99) == 50.0


def test_the_quantile_bound_beyond_the_buckets_is_inf_and_of_nothing_nan() -> None:
    before = {0.005: 0.0, INF: 0.0}
    assert quantile_bound_ms(before, {0.005: 90.0, INF: 100.0}, 0.99) == INF
    assert math.isnan(quantile_bound_ms(before, {0.005: 0.0, INF: 0.0}, 0.99))


def test_a_cpu_sample_tells_processes_and_cores_apart() -> None:
    """The spike's CPU figures: a process that spins for a while is seen using its
    core, an idle one is not, and every core of /proc/stat gets its busy share."""
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        sample = _CpuSample.take([os.getpid(), idle.pid])
        spun_until = time.monotonic() + 0.5
        while time.monotonic() < spun_until:  # bounded: half a second
            pass
        figures = sample.since(("spinner", "sleeper"), phase="test")
    finally:
        idle.kill()
        idle.wait()
    assert figures["test_spinner_cpu_pct"] > 20  # generous: a shared machine
    assert figures["test_sleeper_cpu_pct"] < 10
    cores = [name for name in figures if name.startswith("test_core")]
    assert cores == [f"test_core{n}_busy_pct" for n in range(os.cpu_count() or 1)]
    assert all(0 <= figures[name] <= 100 for name in [*cores, "test_machine_busy_pct"])


def _run(
    ratio: float, *, lost: int = 0, duplicates: int = 0, refused: int = 0, unexpected: int = 0
) -> dict[str, Any]:
    figures = {
        "spike_p99_over_budget_rate_p99": ratio,
        "spike_p99_ms": 10.0 * ratio,
        "spike_budget_rate_p99_ms": 10.0,
        "spike_refused": refused,
        "spike_lost": lost,
        "spike_duplicates": duplicates,
        "spike_unexpected_deliveries": unexpected,
        "spike_drain_rps": 500.0 + ratio,
        "spike_requests": 80000,
        "spike_sent_rps": 4000.0,
        "spike_drain_rps_after_intake": 500.0,
        "spike_background_busy_pct": 1.0,
        "spike_ingest_capacity_rps": 5000.0 + ratio,  # tells the runs apart
    }
    rounds = {"lag": [ratio], "spike_p99_ms_per_second_sent": [ratio, 1.0]}
    return {"figures": figures, "rounds": rounds, "chart": {"budget": ratio}}


def test_the_spike_reports_the_median_run_whole_and_sums_what_must_be_zero() -> None:
    runs = [_run(9.0), _run(2.5, lost=1, unexpected=4), _run(17.0, duplicates=2, refused=3)]
    result = median_run(runs)
    figures = result["figures"]
    assert figures["spike_p99_over_budget_rate_p99"] == 9.0
    assert figures["spike_drain_rps"] == 509.0  # the median run's own, not a mix
    assert result["rounds"]["lag"] == [9.0]
    assert result["rounds"]["spike_p99_ms_per_second_per_run"] == [
        [9.0, 1.0],
        [2.5, 1.0],
        [17.0, 1.0],
    ]
    assert result["chart"]["budget"] == 9.0  # the median run's own chart
    caption = result["chart"]["caption"]
    assert caption.startswith("median of 3 runs (p99 ratios 9, 2.5, 17)")
    assert "3 refused, lost 1, duplicates 2" in caption  # over all runs
    assert result["rounds"]["spike_ingest_capacity_rps_per_run"] == [5009.0, 5002.5, 5017.0]
    assert result["rounds"]["spike_p99_ms_per_run"] == [90.0, 25.0, 170.0]
    assert result["rounds"]["budget_rate_p99_ms_per_run"] == [10.0, 10.0, 10.0]
    assert result["rounds"]["ratio_per_run"] == [9.0, 2.5, 17.0]
    summed = ("spike_lost", "spike_duplicates", "spike_refused", "spike_unexpected_deliveries")
    assert [figures[name] for name in summed] == [1, 2, 3, 4]
    assert figures["spike_runs"] == 3


def test_of_an_even_count_of_spike_runs_the_lower_middle_one_is_reported() -> None:
    result = median_run([_run(4.0), _run(1.5), _run(30.0), _run(3.0)])
    assert result["figures"]["spike_p99_over_budget_rate_p99"] == 3.0
