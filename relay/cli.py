"""The ``relay`` command: one entry point for every process of the relay."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import uvloop

from relay import __version__
from relay.config import ConfigError, Settings
from relay.errors import KafkaUnavailable
from relay.logs import setup_logging

__all__ = ["main"]


def _run(coroutine: Coroutine[Any, Any, None]) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(coroutine)


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    from relay.ingest import serve

    settings = Settings.from_env(ingest_host=args.host, ingest_port=args.port)
    try:
        _run(serve(settings))
    except KafkaUnavailable as exc:
        print(
            f"relay ingest: {exc}\n"
            "Start a broker with `make kafka-up`, or point RELAY_KAFKA_BOOTSTRAP at one.",
            file=sys.stderr,
        )
        return 2
    return 0


def _settings(_args: argparse.Namespace, _settings: Settings) -> int:
    width = max(len(env) for env, _, _ in Settings.describe())
    for env, default, meaning in Settings.describe():
        print(f"{env:<{width}}  {default:<16}  {meaning}")
    return 0


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
    ingest.set_defaults(handler=_ingest)

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
