"""One front door under open-loop load (vegeta), for the spike's questions:

    python bench/open_loop.py rates KIND RATES [--seconds 5] [VAR=VALUE ...]
    python bench/open_loop.py spike KIND[,KIND...] [--rounds 1] [--seconds 10] [VAR=VALUE ...]

KIND: relay (this checkout), relay:CHECKOUT (another checkout's code, this venv),
naive (bench/naive_relay.py; its broker needs the topic naive.play) or ceiling
(bench/ceiling_server.py). The server runs on core 0 (VAR=VALUE go to relay ingest),
vegeta on core 1, against a broker already up on KAFKA_PORT (default 21392;
``deploy/kafka/kafkactl up``). Each request is a POST /play of its own clientId, as
in the spike scenario (relay/bench/spike.py), which this reuses.

``rates``: at each rate (comma-separated, requests/s), the server's CPU per request
and its share of the core, with p50/p99. Closed-loop figures (bench/server_cpu.sh)
say what a request costs when the loop never waits; these say what it costs when
requests arrive one by one, as in the spike.

``spike``: the spike scenario's shape without forward and the sandbox: 2 s of
warm-up and ``--seconds`` at the budget rate (500/s), then ``--seconds`` at 8x;
the two p99s, their ratio and the p99 of each half second of the spike. Rounds of
several KINDs alternate (``spike relay,naive --rounds 3``).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from relay.bench import spike as scenario  # noqa: E402
from relay.bench.procs import SERVER_CORE, Proc, cpu_seconds, start  # noqa: E402
from relay.bench.timeline import Answer, percentile_ms  # noqa: E402

PYTHON = str(ROOT / ".venv" / "bin" / "python")


def serve(kind: str, settings: dict[str, str]) -> Proc:
    port = 18000 + random.randrange(900)
    bootstrap = f"127.0.0.1:{os.environ.get('KAFKA_PORT', '21392')}"
    env: dict[str, str] = {}
    cwd = ROOT
    if kind == "naive":
        command = [PYTHON, "bench/naive_relay.py", str(port), bootstrap]
    elif kind == "ceiling":  # it has no /healthz: its 404 says it is up
        command = [PYTHON, "bench/ceiling_server.py", str(port)]
    elif kind == "relay" or kind.startswith("relay:"):
        cwd = Path(kind.partition(":")[2] or ROOT)
        command = [PYTHON, "-m", "relay", "ingest"]
        env = {
            "RELAY_KAFKA_BOOTSTRAP": bootstrap,
            "RELAY_TOPIC_PREFIX": f"open{random.randrange(10**6)}",
            "RELAY_LOG_LEVEL": "WARNING",
            "RELAY_SHUTDOWN_GRACE_S": "0",
            "RELAY_INGEST_PORT": str(port),
            "RELAY_INGEST_UPSTREAM_RPS": "0",
            **settings,
        }
    else:
        sys.exit(f"KIND: relay, relay:CHECKOUT, naive or ceiling (not {kind})")
    url = f"http://127.0.0.1:{port}"
    try:
        name = kind.partition(":")[0]  # its log: .cache/bench/<name>.log
        return asyncio.run(start(name, command, url=url, env=env, core=SERVER_CORE, cwd=cwd))
    except (RuntimeError, TimeoutError) as exc:
        sys.exit(f"{kind} did not start ({exc}; is Kafka up on {bootstrap}?)")


def summary(answers: list[Answer]) -> str:
    refused = sum(not answer.accepted for answer in answers)
    return (
        f"p50 {percentile_ms(answers, 0.5):.2f} ms p99 {percentile_ms(answers, 0.99):.2f} ms"
        f" refused {refused}"
    )


def rates(kind: str, rates_: list[int], seconds: int, settings: dict[str, str]) -> None:
    server = serve(kind, settings)
    try:
        scenario._attack(server.url, "warm", 500, 2)
        for rate in rates_:
            before, started = cpu_seconds(server.pid), time.monotonic()
            answers = scenario._attack(server.url, f"rate{rate}", rate, seconds)
            used, elapsed = cpu_seconds(server.pid) - before, time.monotonic() - started
            print(
                f"{kind} {rate}/s: cpu {used / elapsed:.2f} of a core, "
                f"{1e6 * used / len(answers):.0f} us/request, {summary(answers)}",
                flush=True,
            )
    finally:
        server.stop()


def spike(kind: str, seconds: int, settings: dict[str, str]) -> None:
    server = serve(kind, settings)
    try:
        scenario._attack(server.url, "warmup", scenario.BUDGET_RPS, 2)
        budget = scenario._attack(server.url, "budget", scenario.BUDGET_RPS, seconds)
        burst = scenario._attack(server.url, "spike", scenario.SPIKE_RPS, seconds)
    finally:
        server.stop()
    first = min(answer.sent_at for answer in burst)
    halves: dict[int, list[Answer]] = {}
    for answer in burst:
        halves.setdefault(math.floor(2 * (answer.sent_at - first)), []).append(answer)
    ratio = percentile_ms(burst, 0.99) / percentile_ms(budget, 0.99)
    print(f"{kind}: at {scenario.BUDGET_RPS:g}/s {summary(budget)}", flush=True)
    print(f"{kind}: at {scenario.SPIKE_RPS:g}/s {summary(burst)}; p99 ratio {ratio:.2f}")
    per_half = " ".join(f"{percentile_ms(halves[n], 0.99):.0f}" for n in sorted(halves))
    print(f"{kind}: spike p99 per half second (ms): {per_half}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    by_rate = modes.add_parser("rates", help="CPU per request at fixed rates")
    by_rate.add_argument("kind", help="relay, relay:CHECKOUT, naive or ceiling")
    by_rate.add_argument("rates", help="requests/s, comma-separated (500,2000,4000)")
    by_rate.add_argument("--seconds", type=int, default=5, help="seconds per rate")
    shape = modes.add_parser("spike", help="the spike's two p99s and their ratio")
    shape.add_argument("kinds", help="comma-separated KINDs, alternated each round")
    shape.add_argument("--seconds", type=int, default=10, help="seconds per phase")
    shape.add_argument("--rounds", type=int, default=1)
    # VAR=VALUE settings for relay ingest may come anywhere after the mode.
    args, extra = parser.parse_known_args()
    if any("=" not in item or item.startswith("-") for item in extra):
        parser.error(f"unrecognized arguments (settings are VAR=VALUE): {' '.join(extra)}")
    settings = dict(item.split("=", 1) for item in extra)
    scenario.WORK.mkdir(parents=True, exist_ok=True)
    if args.mode == "rates":
        numbers = [int(rate) for rate in args.rates.split(",")]
        rates(args.kind, numbers, args.seconds, settings)
        return
    for _ in range(args.rounds):
        for kind in args.kinds.split(","):
            spike(kind, args.seconds, settings)


if __name__ == "__main__":
    main()
