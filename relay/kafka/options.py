"""Kafka client settings, built in one place.

Every Kafka client of the relay (producer, consumer, reader, admin) is made with
``client_options(settings)`` (producers: ``producer_options``): bootstrap servers,
security protocol, SASL mechanism and credentials (from the value or its ``*_FILE``,
read at each call so a rotated secret is picked up by the next client), and a TLS
context that trusts ``RELAY_KAFKA_CA_FILE`` and presents the client certificate.
The result is the keyword arguments of aiokafka's clients: only ``relay.kafka``
reads it; the rest of the relay passes it along without looking inside.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from aiokafka.codec import has_gzip, has_lz4, has_zstd
from aiokafka.helpers import create_ssl_context

from relay.config import ConfigError, Settings

__all__ = ["client_options", "producer_options", "username"]

_CODECS = {"gzip": has_gzip, "lz4": has_lz4, "zstd": has_zstd}


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client, its ``client_id`` aside.

    Raises ``ConfigError`` naming the setting when a file cannot be read or holds
    no usable certificate, key or secret.
    """
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": protocol,
    }
    if protocol.startswith("SASL_"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = username(settings)
        options["sasl_plain_password"] = _secret(
            "RELAY_KAFKA_PASSWORD", settings.kafka_password, settings.kafka_password_file
        )
    if protocol.endswith("SSL"):
        options["ssl_context"] = _tls_context(settings)
    return options


def producer_options(settings: Settings) -> dict[str, Any]:
    """``client_options`` plus the producer's compression (RELAY_KAFKA_COMPRESSION).

    Raises ``ConfigError`` when the codec's library (cramjam for lz4 and zstd) is
    missing, rather than letting the producer fail at construction."""
    codec = settings.kafka_compression
    if codec != "none" and not _CODECS[codec]():
        raise ConfigError(f"RELAY_KAFKA_COMPRESSION={codec} needs the cramjam package")
    return {**client_options(settings), "compression_type": None if codec == "none" else codec}


def username(settings: Settings) -> str:
    """The SASL user name, from RELAY_KAFKA_USERNAME or its file (``ConfigError`` as
    ``client_options``)."""
    return _secret("RELAY_KAFKA_USERNAME", settings.kafka_username, settings.kafka_username_file)


def _secret(env: str, value: str, path: str) -> str:
    if not path:
        return value
    try:
        # A file written with `echo` ends in a newline that is not part of the secret.
        secret = Path(path).read_text().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{env}_FILE={path!r} cannot be read: {exc}") from None
    if not secret:
        raise ConfigError(f"{env}_FILE={path!r} is empty")
    return secret


def _tls_context(settings: Settings) -> ssl.SSLContext:
    """The system's CAs unless RELAY_KAFKA_CA_FILE is set; the client certificate
    when RELAY_KAFKA_CERT_FILE is (its key in RELAY_KAFKA_KEY_FILE or in the same file)."""
    ca, cert, key = settings.kafka_ca_file, settings.kafka_cert_file, settings.kafka_key_file
    try:
        context: ssl.SSLContext = create_ssl_context(cafile=ca or None)
    except (OSError, ssl.SSLError) as exc:  # ssl.SSLError: not PEM certificates
        raise ConfigError(f"RELAY_KAFKA_CA_FILE={ca!r} cannot be used: {exc}") from None
    if cert:
        for env, path in (("RELAY_KAFKA_CERT_FILE", cert), ("RELAY_KAFKA_KEY_FILE", key)):
            if path and not Path(path).is_file():
                raise ConfigError(f"{env}={path!r} is not a readable file")
        try:
            context.load_cert_chain(cert, key or None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"RELAY_KAFKA_CERT_FILE={cert!r} and RELAY_KAFKA_KEY_FILE={key!r} are not "
                f"a PEM certificate and its private key: {exc}"
            ) from None
    context.check_hostname = settings.kafka_check_hostname
    return context
