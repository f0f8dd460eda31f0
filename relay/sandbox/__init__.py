"""A faithful stand-in for the Clips API, for development, tests and benchmarks."""

from relay.sandbox.app import Credential, SandboxState, make_sandbox_app
from relay.sandbox.faults import Faults
from relay.sandbox.server import parse_credentials, serve_sandbox

__all__ = [
    "Credential",
    "Faults",
    "SandboxState",
    "make_sandbox_app",
    "parse_credentials",
    "serve_sandbox",
]
