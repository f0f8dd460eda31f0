"""The seven event types of the Clips API: the one table everything else reads.

Ingest validates with it, the envelope names topics from it, the sandbox upstream
validates with it, and the OpenAPI document is generated from it. Adding an event
type is one more ``EventType`` row in ``EVENT_TYPES``.

Types disagree between the vendor's pages (``shared/upstream/UPSTREAM.md``), so both
spellings are accepted and one is sent on: ids become integers, ``preview`` and
``offline`` become booleans, timestamps become UTC ISO-8601 with ``Z``.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from relay.errors import InvalidEvent

__all__ = [
    "BATCH_PATH",
    "BY_NAME",
    "BY_PATH",
    "EVENT_TYPES",
    "MAX_ID",
    "MAX_ID_DIGITS",
    "MAX_TIMESTAMP_LENGTH",
    "METHODS",
    "METHOD_NEEDING_TIMESTAMP",
    "MIN_CLIENT_ID_LENGTH",
    "STAMPED_REASONS",
    "TEXT_REFUSED_CHARACTERS",
    "TIMESTAMP_PATTERN",
    "Answer",
    "EventType",
    "Field",
    "Kind",
    "Normalised",
    "format_timestamp",
    "normalise",
]

# Numeric ids go on as JSON numbers, and an upstream that reads numbers as doubles
# (JavaScript, many JSON parsers) holds every integer only up to 2^53 - 1: above it,
# 2^53 + 1 arrives as 2^53, another clip's id. So that is the largest id taken.
MAX_ID = 2**53 - 1
MAX_ID_DIGITS = len(str(MAX_ID))  # a string of digits longer than this is over MAX_ID
# The upstream's Client ID page: at least 8 characters (a UUID v4 is recommended).
MIN_CLIENT_ID_LENGTH = 8
METHODS = ("Stream", "Sync", "Offline")
_METHODS_BY_LOWER = {method.lower(): method for method in METHODS}
# "the play is being reported retroactively; a timestamp must be included"
METHOD_NEEDING_TIMESTAMP = "Offline"
# Timestamps are RFC 3339 date-times (what the vendor's examples are, and what OpenAPI's
# date-time means), checked by this one pattern here and in the OpenAPI document (with
# format date-time, which adds only the calendar: no 30 February). Python's own ISO
# reader takes more (a space for T, week dates, basic format) that no schema tool does,
# and a leap second (:60) that Python cannot represent is left out.
TIMESTAMP_PATTERN = (
    r"^([0-9]{3}[1-9]|[0-9]{2}[1-9][0-9]|[0-9][1-9][0-9]{2}|[1-9][0-9]{3})"  # not year 0000
    r"-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
_TIMESTAMP = re.compile(TIMESTAMP_PATTERN)
MAX_TIMESTAMP_LENGTH = len("2024-10-26T10:01:00.123456789+02:00")
# A timestamp outside these bounds, set by the receive time, comes from a device clock
# that is wrong (reset to 1970, or far ahead), not from an event at that time: the play
# still happened, and a refusal would lose it (a client cannot fix its clock and retry),
# so the relay stamps it with its receive time, as a missing one (timestampStamped in
# the envelope). Plays reported retroactively (method Offline) reach back to this date.
EARLIEST_TIMESTAMP = datetime(2000, 1, 1, tzinfo=UTC)
MAX_CLOCK_AHEAD = timedelta(days=1)
# Why a timestamp was stamped (counted by relay_ingest_timestamps_stamped_total).
STAMPED_MISSING = "missing"  # none sent (or null)
STAMPED_IMPLAUSIBLE = "implausible"  # outside the bounds above
STAMPED_REASONS = (STAMPED_MISSING, STAMPED_IMPLAUSIBLE)
# Characters no text field takes: control characters (C0, DEL, C1), line and paragraph
# separators, and the invisible formatting that hides or reorders text (zero-width
# characters, bidirectional overrides, word joiners, the byte order mark). A character
# class in a syntax that Python's re and ECMA-262 (JSON Schema's patterns) read alike.
TEXT_REFUSED_CHARACTERS = r"\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff"
_REFUSED = re.compile(f"[{TEXT_REFUSED_CHARACTERS}]")


class Kind(enum.Enum):
    """How a field is checked and normalised."""

    CLIENT_ID = "client_id"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    METHOD = "method"
    TIMESTAMP = "timestamp"
    COUNTRY = "country"
    TEXT = "text"


class Answer(enum.Enum):
    """What the front door answers once the event is durable."""

    NO_CONTENT = "no_content"  # 204
    APP_ID = "app_id"  # 200 {"appId": N}


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: Kind
    required: bool = True
    min_length: int = 1  # for CLIENT_ID and TEXT
    max_length: int = 256
    description: str = ""


@dataclass(frozen=True, slots=True)
class EventType:
    name: str  # also the topic suffix: <prefix>.<name>
    path: str
    fields: tuple[Field, ...]
    description: str
    answer: Answer = Answer.NO_CONTENT
    rights_checked: bool = False  # the front door answers the clip's streaming rights

    def field(self, name: str) -> Field:
        for field in self.fields:
            if field.name == name:
                return field
        raise KeyError(name)


class Normalised(NamedTuple):
    """A body as the upstream will receive it, and what normalising noticed (a named
    tuple: frozen, and cheaper to build than a dataclass, once per event)."""

    body: dict[str, Any]
    # Why the relay's receive time is the timestamp (STAMPED_REASONS), or None.
    stamped_because: str | None
    unknown_fields: tuple[str, ...]  # dropped (or refused, by setting)

    @property
    def timestamp_stamped(self) -> bool:
        return self.stamped_because is not None


def _client_id() -> Field:
    return Field(
        "clientId",
        Kind.CLIENT_ID,
        min_length=MIN_CLIENT_ID_LENGTH,
        description="Opaque, stable id of one end user (a UUID v4 is recommended).",
    )


def _timestamp() -> Field:
    # Never required: a missing timestamp is stamped with the receive time, because
    # the upstream would otherwise stamp it with the (late) delivery time.
    return Field(
        "timestamp",
        Kind.TIMESTAMP,
        required=False,
        description="RFC 3339 with Z or an offset. The relay's receive time when absent or "
        "null, and when it is before 2000 or more than a day ahead of the relay's clock (a "
        "device clock that is wrong).",
    )


def _clip_id() -> Field:
    return Field("clipId", Kind.INTEGER, description="Clip id, a number or a string of digits.")


def _method() -> Field:
    return Field("method", Kind.METHOD, description="Stream, Sync or Offline (needs a timestamp).")


EVENT_TYPES: tuple[EventType, ...] = (
    EventType(
        "app-start",
        "/app-start",
        (_client_id(), _timestamp(), Field("platform", Kind.TEXT, max_length=64)),
        "A user opened the app.",
        answer=Answer.APP_ID,
    ),
    EventType("app-close", "/app-close", (_client_id(), _timestamp()), "A user closed the app."),
    EventType(
        "play",
        "/play",
        (
            _client_id(),
            _timestamp(),
            _clip_id(),
            _method(),
            Field("preview", Kind.BOOLEAN, required=False),
            Field("offline", Kind.BOOLEAN, required=False),
        ),
        "A clip started playing (previews, UGC and every automatic loop included).",
        rights_checked=True,
    ),
    EventType(
        "track-play",
        "/track-play",
        (_client_id(), _timestamp(), Field("trackId", Kind.INTEGER)),
        "A full-length track started playing while auditioning for custom clipping.",
    ),
    EventType(
        "add",
        "/add",
        (_client_id(), _timestamp(), _clip_id(), _method()),
        "A user confirmed a clip for their content.",
    ),
    EventType(
        "share",
        "/share",
        (
            _client_id(),
            _timestamp(),
            _clip_id(),
            Field("platform", Kind.TEXT, max_length=64),
            Field("shareUri", Kind.TEXT, max_length=2048),
        ),
        "A user shared content with a clip to a third-party platform.",
    ),
    EventType(
        "download",
        "/download",
        (
            _client_id(),
            _clip_id(),
            Field("appId", Kind.INTEGER),
            Field("credentialId", Kind.INTEGER),
            Field("country", Kind.COUNTRY, description="Two-letter country code."),
            _timestamp(),
        ),
        "A user downloaded content to the device.",
    ),
)

BY_PATH: Mapping[str, EventType] = {event_type.path: event_type for event_type in EVENT_TYPES}
BY_NAME: Mapping[str, EventType] = {event_type.name: event_type for event_type in EVENT_TYPES}
# Many events of any types in one request (relay/ingest/batch.py): items name their type.
BATCH_PATH = "/batch"


def format_timestamp(moment: datetime) -> str:
    """UTC ISO-8601 with ``Z``, milliseconds only when there are any (finer digits
    are cut, so that normalising twice gives the same text)."""
    if moment.tzinfo is not UTC:  # the receive time is UTC already: skip the conversion
        moment = moment.astimezone(UTC)
    milliseconds = moment.microsecond // 1000
    moment = moment.replace(tzinfo=None, microsecond=milliseconds * 1000)
    return moment.isoformat(timespec="milliseconds" if milliseconds else "seconds") + "Z"


def _text(field: Field, value: Any, _received_at: datetime) -> str:
    if (  # most values: printable ASCII of a good length, no regex needed
        type(value) is str
        and value.isascii()
        and value.isprintable()
        and field.min_length <= len(value) <= field.max_length
    ):
        return value
    if not isinstance(value, str):
        raise InvalidEvent(field.name, f"{field.name} must be a string")
    if not field.min_length <= len(value) <= field.max_length:
        raise InvalidEvent(
            field.name, f"{field.name} must be {field.min_length} to {field.max_length} characters"
        )
    if _REFUSED.search(value):  # control characters, line breaks, invisible formatting
        raise InvalidEvent(field.name, f"{field.name} must not contain control characters")
    return value


def _integer(field: Field, value: Any, _received_at: datetime) -> int:
    if type(value) is int and 1 <= value <= MAX_ID:  # most
        return value
    # bool is an int in Python; true is not a clip id.
    if isinstance(value, bool):
        raise InvalidEvent(field.name, f"{field.name} must be an integer, not a boolean")
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit() and len(value) <= MAX_ID_DIGITS):
            raise InvalidEvent(
                field.name,
                f"{field.name} must be an integer or a string of 1 to {MAX_ID_DIGITS} digits",
            )
        value = int(value)
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)  # 123.0 from a JSON encoder that writes every number as float
    if not isinstance(value, int):
        raise InvalidEvent(field.name, f"{field.name} must be an integer or a string of digits")
    if not 1 <= value <= MAX_ID:
        raise InvalidEvent(field.name, f"{field.name} must be between 1 and {MAX_ID}")
    return value


def _boolean(field: Field, value: Any, _received_at: datetime) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidEvent(field.name, f'{field.name} must be true, false, "true" or "false"')


def _method_value(field: Field, value: Any, _received_at: datetime) -> str:
    method = (
        _METHODS_BY_LOWER.get(value.lower()) if isinstance(value, str) and value.isascii() else None
    )
    if method is None:
        raise InvalidEvent(field.name, f"{field.name} must be one of {', '.join(METHODS)}")
    return method


def _timestamp_value(field: Field, value: Any, received_at: datetime) -> str | None:
    """The timestamp in UTC, or None (stamp the receive time) when the device's clock
    is plainly wrong."""
    if not (isinstance(value, str) and len(value) <= MAX_TIMESTAMP_LENGTH):
        raise InvalidEvent(field.name, f"{field.name} must be an RFC 3339 string")
    if not _TIMESTAMP.match(value):
        raise InvalidEvent(
            field.name,
            f"{field.name} must be RFC 3339 with Z or an offset, e.g. 2024-10-26T10:00:00Z",
        )
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:  # the pattern lets 30 February through
        raise InvalidEvent(field.name, f"{field.name} is not a date on the calendar") from None
    # Aware comparisons never overflow, even for year 1 or 9999 with an offset.
    if moment < EARLIEST_TIMESTAMP or moment > received_at + MAX_CLOCK_AHEAD:
        return None
    if _is_normal(value):  # most clients send UTC with Z: already the text sent on
        return value
    return format_timestamp(moment)


def _is_normal(value: str) -> bool:
    """True when ``value`` (a valid timestamp) is what ``format_timestamp`` makes of
    it: UTC with Z, and no fraction or a fraction of three digits that are not 000."""
    if value[-1] != "Z":
        return False
    if len(value) == len("2024-10-26T10:01:00Z"):
        return True
    return len(value) == len("2024-10-26T10:01:00.123Z") and value[20:23] != "000"


def _country(field: Field, value: Any, _received_at: datetime) -> str:
    if not (isinstance(value, str) and len(value) == 2 and value.isascii() and value.isalpha()):
        raise InvalidEvent(field.name, f"{field.name} must be a two-letter country code")
    return value.upper()


# A normaliser's None: the field counts as absent (a timestamp from a wrong clock).
_Normaliser = Callable[[Field, Any, datetime], Any]
_NORMALISERS: Mapping[Kind, _Normaliser] = {
    Kind.CLIENT_ID: _text,
    Kind.TEXT: _text,
    Kind.INTEGER: _integer,
    Kind.BOOLEAN: _boolean,
    Kind.METHOD: _method_value,
    Kind.TIMESTAMP: _timestamp_value,
    Kind.COUNTRY: _country,
}


_Plan = tuple[tuple[tuple[Field, _Normaliser], ...], frozenset[str]]
# By identity: hashing a frozen EventType hashes every field, on every request.
_PLANS: dict[int, tuple[EventType, _Plan]] = {}


def _plan(event_type: EventType) -> _Plan:
    """The fields with their normalisers, and the known names: worked out once per type."""
    known = _PLANS.get(id(event_type))
    if known is not None and known[0] is event_type:
        return known[1]
    steps = tuple((field, _NORMALISERS[field.kind]) for field in event_type.fields)
    plan = (steps, frozenset(field.name for field in event_type.fields))
    _PLANS[id(event_type)] = (event_type, plan)  # holding it keeps the id from being reused
    return plan


def normalise(
    event_type: EventType,
    body: object,
    received_at: datetime,
    *,
    reject_unknown: bool = False,
) -> Normalised:
    """Check ``body`` against the table and return what the upstream should get.

    Raises ``InvalidEvent`` naming the first offending field. Never raises anything
    else, whatever ``body`` holds. ``received_at`` must be timezone-aware.
    """
    if not isinstance(body, dict):
        raise InvalidEvent("body", "the body must be a JSON object", "INVALID_PARAMETERS")
    steps, known = _plan(event_type)
    normalised: dict[str, Any] = {}
    for field, normaliser in steps:
        value = body.get(field.name)
        if value is None:
            if field.required:
                raise InvalidEvent(field.name, f"{field.name} is required")
            continue
        normal = normaliser(field, value, received_at)
        if normal is not None:
            normalised[field.name] = normal

    if normalised.get("method") == METHOD_NEEDING_TIMESTAMP and body.get("timestamp") is None:
        raise InvalidEvent(
            "timestamp",
            f"method {METHOD_NEEDING_TIMESTAMP} reports a play retroactively: "
            "timestamp is required",
        )
    stamped_because = None
    if "timestamp" not in normalised:
        normalised["timestamp"] = format_timestamp(received_at)
        # Present but dropped above: a wrong clock's.
        missing = body.get("timestamp") is None
        stamped_because = STAMPED_MISSING if missing else STAMPED_IMPLAUSIBLE

    unknown = () if body.keys() <= known else tuple(name for name in body if name not in known)
    if unknown and reject_unknown:
        raise InvalidEvent(unknown[0], f"unknown field {unknown[0]!r}", "INVALID_PARAMETERS")
    return Normalised(normalised, stamped_because, unknown)
