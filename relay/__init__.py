"""relay: a durable ingestion relay for the Clips API's event tracking.

Client apps post events to the relay exactly as they would to the upstream; the
relay makes each one durable on Kafka before it answers, and forwarding workers
deliver them to the upstream at the pace it allows.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
