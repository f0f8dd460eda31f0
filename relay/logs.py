"""Structured logs: one JSON object per line on stderr.

Fields passed with ``extra={...}`` become keys of the object, so a log line reads
``{"time": ..., "level": "INFO", "logger": "relay.ingest", "message": "listening",
"port": 8080}`` and can be filtered by key.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = ["JsonFormatter", "redact", "setup_logging"]

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


# The query parameter of relay.ingest.gate.QUERY_KEY, up to the next parameter, space,
# quote or escape (a key is URL-safe base64; whatever else follows it is redacted too);
# and, in any form (a repr of a query, a header), a key as relay.tenants.new_key makes them.
_QUERY_KEY = re.compile(r"(relay_key=)[^&\s\"'\\]*")
_KEY = re.compile(r"rk_[A-Za-z0-9_-]{43}")


def redact(line: str) -> str:
    """``line`` without the value of any ``relay_key=`` in it, nor any relay key."""
    if "relay_key" not in line and "rk_" not in line:  # nearly every line: no regex
        return line
    return _KEY.sub("rk_<redacted>", _QUERY_KEY.sub(r"\1<redacted>", line))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact(orjson.dumps(entry, default=str).decode())


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka logs every failed reconnect at ERROR; the relay reports outages itself.
    logging.getLogger("aiokafka").setLevel(
        logging.CRITICAL if level.upper() != "DEBUG" else "DEBUG"
    )
