"""Whether the relay may talk to Kafka, and why not when it may not.

aiokafka's clients log why a broker refused them and then raise a bare "Unable to
bootstrap". ``check_access`` therefore connects once, as every client will, before a
process starts, and translates what goes wrong into the relay's errors: a refused
password or an untrusted certificate becomes ``KafkaSecurityError`` naming the
setting to fix; no answer at all stays ``KafkaUnavailable``. ``translate`` is that
mapping, and ``translated`` the one the other clients of the seam use for errors
raised once running.
"""

from __future__ import annotations

import asyncio
import ssl

from aiokafka.conn import collect_hosts, create_conn
from aiokafka.errors import (
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.protocol.metadata import MetadataRequest

from relay.config import ConfigError, Settings
from relay.errors import KafkaSecurityError, KafkaUnavailable, RelayError
from relay.kafka.options import client_options, username

__all__ = ["check_access", "translate", "translated"]

_NAME_MISMATCH = (62, 64)  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
# Errors that only a security setting explains; anything else from a running client is
# an outage (a connection error there is a broker going away, not a wrong protocol).
_SECURITY_ERRORS = (SaslAuthenticationFailed, UnsupportedSaslMechanismError, ssl.SSLError)


async def check_access(settings: Settings, bound_s: float = 10.0) -> None:
    """Connect to a bootstrap server as every client will (TLS, SASL, a metadata
    request) and return once one accepts.

    Raises ``KafkaSecurityError`` naming the setting when a broker refuses the
    relay or its certificate is not trusted (at the first such broker: the others
    would say the same), ``KafkaUnavailable`` when none answers within ``bound_s``
    each, and ``ConfigError`` as ``client_options`` does.
    """
    options = client_options(settings)
    bootstrap = options.pop("bootstrap_servers")
    failure: RelayError = KafkaUnavailable(f"no Kafka bootstrap server in {bootstrap!r}")
    for attempt in range(_HANG_UP_ATTEMPTS):
        hung_up = False
        for host, port, _family in collect_hosts(bootstrap, randomize=False):
            try:
                async with asyncio.timeout(bound_s):
                    connection = await create_conn(
                        host,
                        port,
                        client_id="relay-check",
                        request_timeout_ms=int(bound_s * 1000),
                        **options,
                    )
                    try:
                        await connection.send(MetadataRequest([]))
                    finally:
                        connection.close()
            except (OSError, KafkaError, TimeoutError) as exc:
                failure = translate(exc, settings, f"{host}:{port}")
                if _hang_up(exc, failure):
                    hung_up = True  # another protocol, or a broker restarting: ask on
                elif isinstance(failure, KafkaSecurityError):
                    raise failure from exc
            else:
                return
        if not hung_up:
            break
        if attempt + 1 < _HANG_UP_ATTEMPTS:
            await asyncio.sleep(_HANG_UP_PAUSE_S)
    raise failure


# A broker that hangs up may be one of another protocol (a setting to fix) or one that
# is restarting (a rolling restart of Kafka): ask every host, a few times, before
# calling it the former.
_HANG_UP_ATTEMPTS = 3
_HANG_UP_PAUSE_S = 2.0


def _hang_up(exc: BaseException, failure: RelayError) -> bool:
    return (
        isinstance(failure, KafkaSecurityError)
        and failure.setting == "RELAY_KAFKA_SECURITY_PROTOCOL"
        and not isinstance(exc, ssl.SSLError)
    )


def translate(exc: BaseException, settings: Settings, address: str) -> RelayError:
    """The relay's error for what happened while connecting to ``address``: each
    answer maps to one setting to fix, or to "Kafka is unavailable"."""
    protocol = settings.kafka_security_protocol
    if isinstance(exc, SaslAuthenticationFailed):
        setting = "RELAY_KAFKA_PASSWORD" + ("_FILE" if settings.kafka_password_file else "")
        return KafkaSecurityError(
            setting,
            f"Kafka at {address} refused user {_username(settings)!r} "
            f"({settings.kafka_sasl_mechanism}): check {setting} (and RELAY_KAFKA_USERNAME)",
        )
    if isinstance(exc, UnsupportedSaslMechanismError):
        return KafkaSecurityError(
            "RELAY_KAFKA_SASL_MECHANISM",
            f"Kafka at {address} does not offer RELAY_KAFKA_SASL_MECHANISM="
            f"{settings.kafka_sasl_mechanism} on this listener",
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_code in _NAME_MISMATCH:
            return KafkaSecurityError(
                "RELAY_KAFKA_CHECK_HOSTNAME",
                f"the certificate of Kafka at {address} is not issued for that name "
                f"({exc.verify_message}): use its name in RELAY_KAFKA_BOOTSTRAP, or set "
                "RELAY_KAFKA_CHECK_HOSTNAME=false",
            )
        trusted = (
            f"RELAY_KAFKA_CA_FILE={settings.kafka_ca_file!r}"
            if settings.kafka_ca_file
            else "the system's CAs (RELAY_KAFKA_CA_FILE unset)"
        )
        return KafkaSecurityError(
            "RELAY_KAFKA_CA_FILE",
            f"the certificate of Kafka at {address} is not trusted by {trusted}: "
            f"{exc.verify_message}; set RELAY_KAFKA_CA_FILE to the CA that signed it",
        )
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        if "CERTIFICATE_REQUIRED" in reason or "BAD_CERTIFICATE" in reason:
            return KafkaSecurityError(
                "RELAY_KAFKA_CERT_FILE",
                f"Kafka at {address} did not accept the client certificate ({reason}): "
                "check RELAY_KAFKA_CERT_FILE and RELAY_KAFKA_KEY_FILE",
            )
        return KafkaSecurityError(
            "RELAY_KAFKA_SECURITY_PROTOCOL",
            f"TLS with Kafka at {address} failed ({reason}): does that listener use "
            f"RELAY_KAFKA_SECURITY_PROTOCOL={protocol}?",
        )
    tls = protocol.endswith("SSL")
    if isinstance(exc, KafkaConnectionError | IllegalSaslStateError) or (
        tls and isinstance(exc, ConnectionResetError)
    ):
        # The port took the connection, then hung up (or reset it at the TLS hello, or
        # answered SASL out of turn): a listener of another protocol does that, and so
        # does a TLS listener refusing the client certificate (TLS 1.3 says so only
        # in an alert that asyncio does not pass on).
        certificate = settings.kafka_cert_file or "unset"
        return KafkaSecurityError(
            "RELAY_KAFKA_SECURITY_PROTOCOL",
            f"Kafka at {address} hung up during the handshake ({_reason(exc)}): does that "
            f"listener use RELAY_KAFKA_SECURITY_PROTOCOL={protocol}"
            + (f", and accept RELAY_KAFKA_CERT_FILE ({certificate})?" if tls else "?"),
        )
    return KafkaUnavailable(f"cannot reach Kafka at {address}: {_reason(exc)}")


def translated(exc: BaseException, settings: Settings, doing: str) -> RelayError:
    """The relay's error for ``exc``, raised by a running client while ``doing``:
    ``KafkaSecurityError`` for a refused password or certificate, otherwise
    ``KafkaUnavailable``."""
    if isinstance(exc, _SECURITY_ERRORS):
        return translate(exc, settings, settings.kafka_bootstrap)
    return KafkaUnavailable(f"Kafka failed while {doing}: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _username(settings: Settings) -> str:
    try:
        return username(settings)
    except ConfigError:
        return "?"
