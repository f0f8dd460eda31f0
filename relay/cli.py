"""The ``relay`` command: one entry point for every process of the relay."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import orjson
import uvloop

from relay import __version__
from relay.config import ConfigError, Settings
from relay.errors import KafkaSecurityError, KafkaUnavailable
from relay.logs import setup_logging

__all__ = ["main"]


def _run(coroutine: Coroutine[Any, Any, None]) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(coroutine)


async def _checked(settings: Settings, serve: Callable[[Settings], Awaitable[None]]) -> None:
    # A refused password or an untrusted certificate stops the process here, named,
    # before any client starts (theirs only say "Unable to bootstrap").
    from relay.kafka.access import check_access

    await check_access(settings)
    await serve(settings)


def _serve(name: str, settings: Settings, serve: Callable[[Settings], Awaitable[None]]) -> int:
    """Run a process until it stops; turn the errors a user can fix into one line."""
    try:
        _run(_checked(settings, serve))
    except KafkaUnavailable as exc:
        print(
            f"relay {name}: {exc}\n"
            "Start a broker with `make kafka-up`, or point RELAY_KAFKA_BOOTSTRAP at one.",
            file=sys.stderr,
        )
        return 2
    except (ConfigError, KafkaSecurityError) as exc:
        print(f"relay {name}: {exc}", file=sys.stderr)
        return 2
    return 0


def _ingest(args: argparse.Namespace, _settings: Settings) -> int:
    from relay.ingest import serve
    from relay.ingest.seat import WorkerSeat
    from relay.ingest.workers import Supervisor

    try:
        settings = Settings.from_env(
            ingest_host=args.host, ingest_port=args.port, ingest_workers=args.workers
        )
        count = settings.worker_count
    except ConfigError as exc:
        print(f"relay ingest: {exc}", file=sys.stderr)
        return 2
    if args.worker_slot is not None:  # started by a group's supervisor
        seat = WorkerSeat(args.worker_slot, args.worker_count, Path(args.worker_dir))
        return _serve("ingest", settings, lambda settings: serve(settings, seat))
    if count == 1:
        return _serve("ingest", settings, serve)
    # The workers check Kafka and settings themselves and say what is wrong; the
    # supervisor exits with the status of one that failed to start.
    status = [2]

    async def supervise() -> None:
        status[0] = await Supervisor(settings, count).run()

    try:
        _run(supervise())
    except ConfigError as exc:
        print(f"relay ingest: {exc}", file=sys.stderr)
        return 2
    return status[0]


def _forward(args: argparse.Namespace, _settings: Settings) -> int:
    from relay.forward import serve_forward

    settings = Settings.from_env(forward_host=args.host, forward_port=args.port)
    return _serve("forward", settings, serve_forward)


def _sandbox(args: argparse.Namespace, settings: Settings) -> int:
    from relay.sandbox import SandboxState, parse_credentials, serve_sandbox
    from relay.sandbox.ledger import Ledger

    try:
        credentials = parse_credentials(args.credentials or settings.sandbox_credentials)
    except ValueError as exc:
        print(f"relay sandbox: {exc}", file=sys.stderr)
        return 2
    state = SandboxState(
        credentials,
        token_lifetime_s=args.token_lifetime or settings.sandbox_token_lifetime_s,
        ledger=(
            Ledger.kept_in(Path(settings.sandbox_ledger_file))
            if settings.sandbox_ledger_file
            else Ledger()
        ),
    )
    _run(
        serve_sandbox(args.host or settings.sandbox_host, args.port or settings.sandbox_port, state)
    )
    return 0


def _dlq(args: argparse.Namespace, settings: Settings) -> int:
    from relay import dlq_tools
    from relay.dlq_triage import selected_tenants
    from relay.kafka.access import check_access

    tenants = args.tenant or ()
    try:
        if tenants:  # a typo is named before Kafka is asked
            selected_tenants(settings, tenants)
        asyncio.run(check_access(settings))
        if args.dlq_command == "inspect":
            report = dlq_tools.inspect(
                settings, sample=args.sample, progress=sys.stderr.isatty(), tenants=tenants
            )
            inspection = asyncio.run(report)
            print(f"{inspection.total} dead letters on {settings.dlq_topic}")
            for title, counts in (
                ("by tenant", inspection.by_tenant),
                ("by reason", inspection.by_reason),
                ("by event type", inspection.by_type),
                ("by failure code", inspection.by_code),
            ):
                print(f"  {title}:")
                for name, count in counts.most_common():
                    print(f"    {name:<24} {count}")
            if inspection.sample:
                print("  sample:")
                for letter in inspection.sample:
                    print("    " + orjson.dumps(letter).decode())
            return 0
        result = asyncio.run(
            dlq_tools.replay(
                settings,
                reasons=args.reason or (),
                types=args.type or (),
                tenants=tenants,
                force=args.force,
                dry_run=args.dry_run,
                progress=sys.stderr.isatty(),
            )
        )
    except (KafkaUnavailable, KafkaSecurityError, ConfigError) as exc:
        print(f"relay dlq: {exc}", file=sys.stderr)
        return 2
    print(result.summary(settings.dlq_topic))
    return 0


def _bench(args: argparse.Namespace, _settings: Settings) -> int:
    from relay.bench.run import run_bench
    from relay.bench.scenarios import SCENARIOS

    names = args.scenario.split(",") if args.scenario else list(SCENARIOS)
    try:
        results = asyncio.run(run_bench(names, args.rounds, args.seconds))
    except (ValueError, RuntimeError) as exc:
        print(f"relay bench: {exc}", file=sys.stderr)
        return 2
    for name, result in results.items():
        print(f"{name}: " + ", ".join(f"{k}={v}" for k, v in result["figures"].items()))
    print("written: docs/BENCHMARKS.md and bench/results/")
    return 0


def _tenants(args: argparse.Namespace, settings: Settings) -> int:
    from relay.tenants import append_key

    file = args.file or settings.tenants_file
    if not file:
        # Without a file the relay runs one open tenant with no keys: there is nowhere
        # to put a key, so say how to get a file rather than guess one.
        print(
            "relay tenants: no tenants file: set RELAY_TENANTS_FILE=<path> (the file ingest "
            "and forward read) or give --file <path>. To start one, copy "
            "deploy/tenants.example.toml and edit its [tenants.<name>] tables.",
            file=sys.stderr,
        )
        return 2
    path = Path(file)
    try:
        key = append_key(path, args.tenant, args.id)
    except ConfigError as exc:
        print(f"relay tenants: {exc}", file=sys.stderr)
        return 2
    print(key)
    print(
        f"added key {args.id!r} to tenant {args.tenant!r} in {path}; the key is shown only "
        "now (the file holds its SHA-256). Restart ingest to use it.",
        file=sys.stderr,
    )
    return 0


def _settings(_args: argparse.Namespace, _settings: Settings) -> int:
    width = max(len(env) for env, _, _ in Settings.describe())
    for env, default, meaning in Settings.describe():
        print(f"{env:<{width}}  {default:<16}  {meaning}")
    return 0


_TENANT_HELP = (
    "only letters of this tenant (repeatable; a configured tenant, read from the "
    "letter's envelope or source topic)"
)


def _at_least_one(text: str) -> int:
    number = int(text)  # argparse turns a ValueError into "invalid ... value"
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {number}")
    return number


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relay",
        description="A durable ingestion relay for the Clips API's event tracking. "
        "Settings come from RELAY_* environment variables (`relay settings` lists them).",
    )
    parser.add_argument("--version", action="version", version=f"relay {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ingest = commands.add_parser(
        "ingest",
        help="run the front door: accept events, make them durable on Kafka",
        description="Accept the upstream's event endpoints (POST /play, /app-start, ...), "
        "write each event to Kafka (acks=all) and answer once it is durable. "
        "Also serves /healthz, /readyz and /metrics. Stops cleanly on SIGTERM.",
    )
    ingest.add_argument("--host", help="address to listen on (RELAY_INGEST_HOST, 127.0.0.1)")
    ingest.add_argument("--port", type=int, help="port to listen on (RELAY_INGEST_PORT, 8080)")
    ingest.add_argument(
        "--workers",
        help="processes sharing the port, each with its own producer; auto: one per usable "
        "CPU (RELAY_INGEST_WORKERS, 1)",
    )
    # Set by the supervisor of `--workers N` for each worker it starts.
    ingest.add_argument("--worker-slot", type=int, help=argparse.SUPPRESS)
    ingest.add_argument("--worker-count", type=int, help=argparse.SUPPRESS)
    ingest.add_argument("--worker-dir", help=argparse.SUPPRESS)
    ingest.set_defaults(handler=_ingest)

    forward = commands.add_parser(
        "forward",
        help="run the workers: deliver events from Kafka to the upstream",
        description="Join the consumer group over the event topics and deliver every event "
        "to the upstream within its budget, with retries and a dead-letter queue. Serves "
        "/metrics, /healthz and /readyz on RELAY_FORWARD_PORT. Stops cleanly on SIGTERM.",
    )
    forward.add_argument("--host", help="metrics address (RELAY_FORWARD_HOST, 127.0.0.1)")
    forward.add_argument("--port", type=int, help="metrics port (RELAY_FORWARD_PORT, 9101)")
    forward.set_defaults(handler=_forward)

    sandbox = commands.add_parser(
        "sandbox",
        help="run a stand-in for the Clips API with fault controls and a ledger",
        description="A faithful stand-in for the upstream: /authenticate, the seven event "
        "endpoints, /music-check; POST /_sandbox/faults to inject latency, errors, outages, "
        "rate limits, rights failures and token expiry; GET /_sandbox/ledger for what it "
        "received; POST /_sandbox/reset.",
    )
    sandbox.add_argument("--host", help="address (RELAY_SANDBOX_HOST, 127.0.0.1)")
    sandbox.add_argument("--port", type=int, help="port (RELAY_SANDBOX_PORT, 8090)")
    sandbox.add_argument(
        "--credentials",
        help="token:secret[:appId],... accepted at /authenticate "
        "(RELAY_SANDBOX_CREDENTIALS, demo-token:demo-secret:1)",
    )
    sandbox.add_argument("--token-lifetime", type=float, help="bearer lifetime in seconds (3600)")
    sandbox.set_defaults(handler=_sandbox)

    dlq = commands.add_parser(
        "dlq",
        help="inspect and replay dead letters",
        description="Dead letters live on <prefix>.dlq (RELAY_TOPIC_PREFIX).",
    )
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    inspect = dlq_commands.add_parser(
        "inspect",
        help="count dead letters by reason, type and failure code, with a sample",
        description="Read the whole DLQ and count its letters by tenant, reason, event "
        "type and failure code; show a sample.",
    )
    inspect.add_argument("--sample", type=int, default=5, help="letters to show (5)")
    inspect.add_argument("--tenant", action="append", help=_TENANT_HELP)
    replay = dlq_commands.add_parser(
        "replay",
        help="send dead letters back to their original topics",
        description="Send dead letters back to the topics they came from, where the "
        "forwarders deliver them again. Letters replayed before are skipped (unless "
        "--force), so running it twice never sends a letter twice. Letters the relay "
        "would refuse again are skipped and left unmarked, so a run after the fix "
        "replays them: undecodable ones the forwarder still cannot read, those of a "
        "tenant not configured, and NO_STREAMING_RIGHTS refusals of clips the rights "
        "facts still deny. The summary counts letters by reason: replayed, skipped "
        "(and why), already replayed before.",
    )
    replay.add_argument("--reason", action="append", help="only this reason (repeatable)")
    replay.add_argument("--type", action="append", help="only this event type (repeatable)")
    replay.add_argument("--tenant", action="append", help=_TENANT_HELP)
    replay.add_argument("--force", action="store_true", help="replay letters replayed before")
    replay.add_argument("--dry-run", action="store_true", help="count, send nothing")
    dlq.set_defaults(handler=_dlq)

    tenants = commands.add_parser(
        "tenants",
        help="manage tenants' inbound keys",
        description="Manage the tenants file (RELAY_TENANTS_FILE).",
    )
    tenant_commands = tenants.add_subparsers(
        dest="tenants_command", required=True, metavar="ACTION"
    )
    add_key = tenant_commands.add_parser(
        "add-key",
        help="create an inbound key for a tenant: print it once, store its hash",
        description="Create a random inbound key for a tenant, print it once on stdout "
        "and append its SHA-256 to the tenants file.",
    )
    add_key.add_argument("--tenant", required=True, help="the tenant's name in the file")
    add_key.add_argument("--id", required=True, help="a name for the key (e.g. ios-2026)")
    add_key.add_argument("--file", help="the tenants file (RELAY_TENANTS_FILE)")
    tenants.set_defaults(handler=_tenants)

    bench = commands.add_parser(
        "bench",
        help="run the benchmarks (a broker of their own on 127.0.0.1:29092)",
        description="Run the benchmark scenarios on loopback, each against a ceiling "
        "measured in the same run; write bench/results/<date>.json and docs/BENCHMARKS.md.",
    )
    bench.add_argument(
        "--scenario",
        help="comma-separated, from: ingest,naive,forward,budget,e2e,memory,broker,workers,"
        "spike,burst,hold,batch (all of them when left out)",
    )
    bench.add_argument(
        "--rounds",
        type=_at_least_one,
        default=3,
        help="rounds per scenario, alternating where a scenario compares servers; the "
        "spike runs whole this many times, about 3-5 minutes each (3)",
    )
    bench.add_argument(
        "--seconds", type=_at_least_one, default=10, help="seconds per measured run (10)"
    )
    bench.set_defaults(handler=_bench)

    settings = commands.add_parser(
        "settings",
        help="list every RELAY_* setting with its default and meaning",
        description="List every RELAY_* environment variable the relay reads.",
    )
    settings.set_defaults(handler=_settings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    handler: Callable[[argparse.Namespace, Settings], int] = args.handler
    return handler(args, settings)


if __name__ == "__main__":
    sys.exit(main())
