"""Web origins as the tenants file lists them and browsers send them (``Origin``).

A browser sends an origin serialised one way only: lowercase scheme and host, the
port only when it is not the scheme's default, no path. A configured origin is
brought to that form, so that comparing the header with the list is a set lookup,
and anything that is not an origin (a path, a wildcard, ``null``) is refused at
load: a typo must not silently open or close the door.
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["origin"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(text: str) -> str:
    """``text`` as a browser would send it in ``Origin``.

    Raises ``ValueError`` saying what is wrong: only ``http``/``https``
    ``scheme://host[:port]`` is an origin here. Wildcards are refused rather than given
    a meaning: a key usable from every site is a key anyone can spend, so each site
    is listed."""
    if "*" in text:
        raise ValueError(f"{text!r}: no wildcards; list each origin")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"{text!r}: give scheme://host[:port] with scheme http or https")
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{text!r}: an origin has no path, query, fragment or user")
    host = parts.hostname  # lowercased by urlsplit; IPv6 without its brackets
    if not host.isascii():
        raise ValueError(f"{text!r}: write the host as browsers send it, in punycode (xn--...)")
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"
