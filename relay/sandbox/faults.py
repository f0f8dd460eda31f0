"""The sandbox's runtime fault controls: one frozen value, replaced whole on each change.

``POST /_sandbox/faults`` takes a JSON object of any of these fields and merges it
onto the current faults; ``POST /_sandbox/reset`` restores the defaults.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from relay.failures import FAILURE_CODES

__all__ = ["Faults", "FaultsError"]

OUTAGES = ("none", "refuse", "unavailable")


class FaultsError(ValueError):
    """A faults request the sandbox cannot apply; the message says which field."""


@dataclass(frozen=True, slots=True)
class Faults:
    latency_ms: float = 0.0  # added before answering each event request
    error_rate: float = 0.0  # share of event requests answered with the error below
    error_status: int = 500
    error_code: str = "INTERNAL_ERROR"
    error_paths: tuple[str, ...] = ()  # empty: every event path
    outage: str = "none"  # refuse: connections refused; unavailable: 503 SERVICE_UNAVAILABLE
    outage_seconds: float = 0.0  # refuse outages end by themselves after this long
    rate_limit: float = 0.0  # requests/s per credential; 0 means none; 429 + Retry-After beyond
    retry_after_s: int = 1
    no_rights_clips: tuple[int, ...] = ()  # /play of these answers NO_STREAMING_RIGHTS
    revoked: bool = False  # every token and /authenticate answer AUTHENTICATION_FAILED
    revoked_credentials: tuple[str, ...] = ()  # the same, for these credential tokens only
    no_app_id: bool = False  # /app-start answers 200 {} (an upstream that names no appId)

    def merged(self, changes: dict[str, Any]) -> Faults:
        """Raises ``FaultsError`` for unknown fields or values out of range."""
        known = {spec.name: spec for spec in dataclasses.fields(self)}
        values: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in known:
                raise FaultsError(f"unknown fault {name!r}; known: {', '.join(known)}")
            current = getattr(self, name)
            if isinstance(current, tuple):
                if not isinstance(value, list):
                    raise FaultsError(f"{name} must be a list")
                value = tuple(value)
            elif isinstance(current, bool):
                if not isinstance(value, bool):
                    raise FaultsError(f"{name} must be true or false")
            elif isinstance(current, int | float) and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise FaultsError(f"{name} must be a number")
            values[name] = type(current)(value) if not isinstance(current, tuple) else value
        faults = dataclasses.replace(self, **values)
        faults._check()
        return faults

    def _check(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise FaultsError("error_rate must be between 0 and 1")
        if self.error_code not in FAILURE_CODES:
            raise FaultsError(f"error_code must be one of {', '.join(FAILURE_CODES)}")
        if not 100 <= self.error_status <= 599:
            raise FaultsError("error_status must be an HTTP status")
        if self.outage not in OUTAGES:
            raise FaultsError(f"outage must be one of {', '.join(OUTAGES)}")
        if self.outage == "refuse" and self.outage_seconds <= 0:
            raise FaultsError(
                "outage refuse closes the port, controls included: give outage_seconds"
            )
        if self.latency_ms < 0 or self.rate_limit < 0 or self.retry_after_s < 0:
            raise FaultsError("latency_ms, rate_limit and retry_after_s must not be negative")

    def as_json(self) -> dict[str, Any]:
        return {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in dataclasses.asdict(self).items()
        }
