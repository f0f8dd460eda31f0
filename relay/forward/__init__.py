"""The forwarding workers: deliver every event from Kafka to the upstream."""

from relay.forward.server import Forwarder, serve_forward

__all__ = ["Forwarder", "serve_forward"]
