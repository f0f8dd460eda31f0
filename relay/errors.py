"""The relay's errors, drawn once.

    RelayError
    ├── InvalidEvent            permanent: the client must fix the request (400)
    ├── UndecodableBody         permanent: a body the front door cannot decode: a
    │                           Content-Encoding it does not take (415), corrupt (400),
    │                           over the body limit once decoded (413)
    ├── KafkaUnavailable        retriable: the write was not acknowledged in time (503);
    │   │                       it may still be written
    │   └── NotWritten          retriable: Kafka never got the record (unreachable, no
    │                           metadata, the producer stopped): it will not be written
    ├── CommitFailed            retriable: a rebalance took the partitions first; the
    │                           next owner starts from the last commit
    ├── KafkaRefused            permanent: Kafka answered and said no (a topic config it
    │                           rejects, a policy); asking again gets the same answer
    ├── KafkaSecurityError      permanent: Kafka refused the credentials, the broker's
    │                           certificate is not trusted, or the protocols differ
    └── TransportError          retriable: no complete answer from the upstream (could
                                not connect, the connection broke, an answer the relay
                                cannot read); the request may have reached it

Callers read ``retriable`` on the class rather than keeping lists of types, as
aiokafka does. Errors of dependencies are translated at the seam that talks to them
(``raise KafkaUnavailable(...) from exc``; for Kafka, the package ``relay.kafka``),
so nothing above a seam imports a dependency's exception types.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "CommitFailed",
    "InvalidEvent",
    "KafkaRefused",
    "KafkaSecurityError",
    "KafkaUnavailable",
    "NotWritten",
    "RelayError",
    "TransportError",
    "UndecodableBody",
]


class RelayError(Exception):
    retriable: ClassVar[bool] = False


class InvalidEvent(RelayError):
    """A body the upstream would refuse; ``field`` names the offending part.

    ``failure_code`` is one of the upstream's codes: VALIDATION_ERROR for a field
    that is wrong, INVALID_PARAMETERS for a request that is not an event at all.
    """

    def __init__(self, field: str, message: str, failure_code: str = "VALIDATION_ERROR") -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.failure_code = failure_code


class UndecodableBody(RelayError):
    """A request body the front door cannot decode; ``status`` is the answer's (415,
    400 or 413) and ``field`` names what to fix (``Content-Encoding`` or ``body``)."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.message = message


class KafkaUnavailable(RelayError):
    """Kafka did not acknowledge a write within the bound; nothing may be promised."""

    retriable = True


class NotWritten(KafkaUnavailable):
    """A write that never reached Kafka: answering 503 for it is not ambiguous (a
    retry cannot duplicate it)."""


class CommitFailed(RelayError):
    """Kafka refused a commit because the group moved on (a rebalance is under way);
    nothing was committed, and the partitions' next owner reads from the last commit."""

    retriable = True


class KafkaRefused(RelayError):
    """Kafka understood the request and refused it for a reason that time does not
    change (an invalid config, a broker policy); the message says which."""


class KafkaSecurityError(RelayError):
    """Kafka and the relay could not agree on security: a refused password, an
    untrusted certificate, another protocol. Waiting does not help; ``setting``
    names the ``RELAY_KAFKA_*`` variable to fix, and the message says it too."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


class TransportError(RelayError):
    """No complete answer from the upstream (``relay/http1``): the connection could
    not be made or broke, or the answer was unreadable. The request may have reached
    the upstream: a retry may deliver it twice."""

    retriable = True
