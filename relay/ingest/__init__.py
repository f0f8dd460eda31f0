"""The front door: accepts the upstream's own event endpoints and makes each event durable."""

from relay.ingest.app import make_app
from relay.ingest.server import serve

__all__ = ["make_app", "serve"]
