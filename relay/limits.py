"""Process limits the relay raises for itself."""

from __future__ import annotations

import contextlib
import resource

__all__ = ["raise_open_files_limit"]


def raise_open_files_limit() -> int:
    """Every connection is a file: take the hard limit the system allows (containers
    and shells often start with a soft limit of 1024). Returns the soft limit now in
    force (``resource.RLIM_INFINITY`` when unlimited)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
