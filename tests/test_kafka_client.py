"""The Kafka client settings factory: options per protocol, secrets from files, and
errors that name the setting to fix. No broker: TLS refusals come from local servers."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from relay.config import ConfigError, Settings
from relay.errors import KafkaSecurityError, KafkaUnavailable
from relay.kafka import options as kafka_options
from relay.kafka.access import check_access, translate, translated
from relay.kafka.options import client_options, producer_options
from tests.tls import Authority

# A certificate subject as ssl reports it: relative distinguished names, each a tuple of
# (name, value) pairs.
RDNS = tuple[tuple[tuple[str, str], ...], ...]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pki")
    ca, stranger = Authority.create(folder, "ca"), Authority.create(folder, "stranger")
    server, server_key = ca.issue(folder, "server", "IP:127.0.0.1")
    elsewhere, elsewhere_key = ca.issue(folder, "elsewhere", "DNS:elsewhere.example")
    client, client_key = ca.issue(folder, "client", "DNS:relay")
    return {
        "ca": ca.cert,
        "stranger": stranger.cert,
        "server": server,
        "server_key": server_key,
        "elsewhere": elsewhere,
        "elsewhere_key": elsewhere_key,
        "client": client,
        "client_key": client_key,
    }


def env(**values: str) -> dict[str, str]:
    return {f"RELAY_KAFKA_{name.upper()}": value for name, value in values.items()}


def test_plaintext_is_bootstrap_and_protocol_only() -> None:
    assert client_options(Settings(kafka_bootstrap="k1:9092,k2:9092")) == {
        "bootstrap_servers": "k1:9092,k2:9092",
        "security_protocol": "PLAINTEXT",
    }


def test_sasl_plaintext_carries_mechanism_and_credentials() -> None:
    settings = Settings.from_env(
        env(
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-512",
            username="relay",
            password="s3cret",
        )
    )
    options = client_options(settings)
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("relay", "s3cret")
    assert "ssl_context" not in options


def test_ssl_trusts_the_ca_file_and_checks_the_hostname(pki: dict[str, Path]) -> None:
    options = client_options(
        Settings.from_env(env(security_protocol="SSL", ca_file=str(pki["ca"])))
    )
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    # typeshed types every field of a certificate as any of the shapes a field can take.
    subjects = [cast(RDNS, ca["subject"]) for ca in context.get_ca_certs()]
    assert [dict(entry[0] for entry in subject) for subject in subjects] == [{"commonName": "ca"}]
    assert "sasl_mechanism" not in options


def test_the_hostname_check_can_be_turned_off_but_not_the_chain(pki: dict[str, Path]) -> None:
    settings = Settings.from_env(
        env(security_protocol="SSL", ca_file=str(pki["ca"]), check_hostname="false")
    )
    context = client_options(settings)["ssl_context"]
    assert not context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED


def test_sasl_ssl_reads_credentials_from_files(tmp_path: Path, pki: dict[str, Path]) -> None:
    (tmp_path / "user").write_text("relay\n")  # as `echo relay > user` writes it
    (tmp_path / "password").write_text("pa ss\n")
    settings = Settings.from_env(
        env(
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-256",
            username_file=str(tmp_path / "user"),
            password_file=str(tmp_path / "password"),
            ca_file=str(pki["ca"]),
        )
    )
    options = client_options(settings)
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("relay", "pa ss")
    assert isinstance(options["ssl_context"], ssl.SSLContext)


def test_a_rotated_secret_file_is_read_by_the_next_client(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("old")
    settings = Settings.from_env(
        env(security_protocol="SASL_PLAINTEXT", username="relay", password_file=str(secret))
    )
    assert client_options(settings)["sasl_plain_password"] == "old"
    secret.write_text("new")
    assert client_options(settings)["sasl_plain_password"] == "new"


def test_compression_is_for_producers_and_lz4_by_default() -> None:
    assert Settings().kafka_compression == "lz4"
    assert producer_options(Settings())["compression_type"] == "lz4"
    assert producer_options(Settings(kafka_compression="none"))["compression_type"] is None
    assert "compression_type" not in client_options(Settings())


def test_a_missing_codec_library_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(kafka_options._CODECS, "zstd", lambda: False)
    with pytest.raises(ConfigError, match="RELAY_KAFKA_COMPRESSION=zstd needs the cramjam"):
        producer_options(Settings(kafka_compression="zstd"))


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        (env(security_protocol="TLS"), "RELAY_KAFKA_SECURITY_PROTOCOL must be one of"),
        (env(sasl_mechanism="GSSAPI"), "RELAY_KAFKA_SASL_MECHANISM must be one of"),
        (env(compression="snappy"), "RELAY_KAFKA_COMPRESSION must be one of"),
        (env(security_protocol="SASL_SSL", password="p"), "RELAY_KAFKA_USERNAME .* is needed"),
        (env(security_protocol="SASL_SSL", username="u"), "RELAY_KAFKA_PASSWORD .* is needed"),
        (
            env(security_protocol="SASL_SSL", username="u", password="p", password_file="/f"),
            "set RELAY_KAFKA_PASSWORD or RELAY_KAFKA_PASSWORD_FILE, not both",
        ),
        (env(ca_file="/ca.pem"), "RELAY_KAFKA_CA_FILE is set but .*PLAINTEXT ignores it"),
        (env(username="u", password="p"), "RELAY_KAFKA_USERNAME is set but"),
        (
            env(security_protocol="SSL", key_file="/k.pem"),
            "RELAY_KAFKA_KEY_FILE needs RELAY_KAFKA_CERT_FILE",
        ),
    ],
)
def test_settings_that_do_not_fit_together_name_the_variable(
    variables: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(variables)


def sasl_from_files(tmp_path: Path, **files: str) -> Settings:
    return Settings.from_env(
        env(
            security_protocol="SASL_PLAINTEXT",
            username_file=files.get("username", str(tmp_path / "user")),
            password_file=files.get("password", str(tmp_path / "password")),
        )
    )


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (lambda d: sasl_from_files(d, password=str(d / "absent")), "RELAY_KAFKA_PASSWORD_FILE="),
        (
            lambda d: sasl_from_files(d, username=str(d / "empty")),
            "RELAY_KAFKA_USERNAME_FILE=.*empty",
        ),
        (
            lambda d: Settings(kafka_security_protocol="SSL", kafka_ca_file=str(d / "absent")),
            "RELAY_KAFKA_CA_FILE=.*cannot be used",
        ),
        (
            lambda d: Settings(kafka_security_protocol="SSL", kafka_ca_file=str(d / "user")),
            "RELAY_KAFKA_CA_FILE=.*cannot be used",  # not PEM certificates
        ),
        (
            lambda d: Settings(kafka_security_protocol="SSL", kafka_cert_file=str(d / "absent")),
            "RELAY_KAFKA_CERT_FILE=.*not a readable file",
        ),
    ],
)
def test_unreadable_files_name_the_setting(
    tmp_path: Path, make: Callable[[Path], Settings], named: str
) -> None:
    (tmp_path / "user").write_text("relay")
    (tmp_path / "password").write_text("secret")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match=named):
        client_options(make(tmp_path))


def test_a_certificate_with_another_key_names_both_files(pki: dict[str, Path]) -> None:
    settings = Settings(
        kafka_security_protocol="SSL",
        kafka_cert_file=str(pki["client"]),
        kafka_key_file=str(pki["server_key"]),
    )
    with pytest.raises(ConfigError, match=r"RELAY_KAFKA_CERT_FILE=.* and RELAY_KAFKA_KEY_FILE="):
        client_options(settings)


def test_a_client_certificate_and_key_load(pki: dict[str, Path]) -> None:
    settings = Settings(
        kafka_security_protocol="SSL",
        kafka_ca_file=str(pki["ca"]),
        kafka_cert_file=str(pki["client"]),
        kafka_key_file=str(pki["client_key"]),
    )
    assert isinstance(client_options(settings)["ssl_context"], ssl.SSLContext)


@pytest.mark.parametrize(
    ("error", "settings", "named"),
    [
        (
            SaslAuthenticationFailed(),
            Settings(kafka_username="relay", kafka_password="x"),
            "RELAY_KAFKA_PASSWORD",
        ),
        (
            SaslAuthenticationFailed(),
            Settings(kafka_username="relay", kafka_password_file="/run/secrets/p"),
            "RELAY_KAFKA_PASSWORD_FILE",
        ),
        (UnsupportedSaslMechanismError(), Settings(), "RELAY_KAFKA_SASL_MECHANISM"),
        (
            ConnectionResetError(),
            Settings(kafka_security_protocol="SSL"),
            "RELAY_KAFKA_SECURITY_PROTOCOL",
        ),
    ],
)
def test_refusals_translate_to_a_security_error_naming_the_setting(
    error: Exception, settings: Settings, named: str
) -> None:
    translated = translate(error, settings, "k1:9093")
    assert isinstance(translated, KafkaSecurityError)
    assert translated.setting == named
    assert named in str(translated)
    assert not translated.retriable


def test_no_answer_is_unavailable_and_retriable() -> None:
    translated = translate(ConnectionRefusedError(111, "refused"), Settings(), "k1:9092")
    assert isinstance(translated, KafkaUnavailable)
    assert translated.retriable


def test_a_running_client_losing_its_broker_is_unavailable_not_misconfigured() -> None:
    """Once running, a dropped connection is an outage; only a refused password or
    certificate is a setting to fix."""
    settings = Settings(kafka_security_protocol="SASL_SSL", kafka_username="relay")
    lost = translated(KafkaConnectionError("gone"), settings, "fetching")
    assert isinstance(lost, KafkaUnavailable)
    assert "fetching" in str(lost)
    refused = translated(SaslAuthenticationFailed(), settings, "fetching")
    assert isinstance(refused, KafkaSecurityError)
    assert refused.setting == "RELAY_KAFKA_PASSWORD"


@asynccontextmanager
async def tls_server(cert: Path, key: Path, client_ca: Path | None = None) -> AsyncIterator[str]:
    """A TLS listener that hangs up after the handshake (it speaks no Kafka)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)

    async def hang_up(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0, ssl=context)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


async def refusal(bootstrap: str, **settings: Any) -> KafkaSecurityError:
    with pytest.raises(KafkaSecurityError) as caught:
        await check_access(
            Settings(kafka_bootstrap=bootstrap, kafka_security_protocol="SSL", **settings),
            bound_s=5,
        )
    return caught.value


async def test_an_untrusted_broker_certificate_names_the_ca_file(pki: dict[str, Path]) -> None:
    async with tls_server(pki["server"], pki["server_key"]) as bootstrap:
        error = await refusal(bootstrap, kafka_ca_file=str(pki["stranger"]))
    assert error.setting == "RELAY_KAFKA_CA_FILE"
    assert "is not trusted by RELAY_KAFKA_CA_FILE=" in str(error)


async def test_a_certificate_for_another_name_names_the_hostname_check(
    pki: dict[str, Path],
) -> None:
    async with tls_server(pki["elsewhere"], pki["elsewhere_key"]) as bootstrap:
        error = await refusal(bootstrap, kafka_ca_file=str(pki["ca"]))
    assert error.setting == "RELAY_KAFKA_CHECK_HOSTNAME"


async def test_a_listener_that_hangs_up_after_tls_names_protocol_and_client_certificate(
    pki: dict[str, Path],
) -> None:
    async with tls_server(pki["server"], pki["server_key"], client_ca=pki["ca"]) as bootstrap:
        error = await refusal(bootstrap, kafka_ca_file=str(pki["ca"]))
    assert error.setting == "RELAY_KAFKA_SECURITY_PROTOCOL"
    assert "RELAY_KAFKA_CERT_FILE (unset)" in str(error)


async def test_a_closed_port_is_unavailable() -> None:
    with pytest.raises(KafkaUnavailable, match=r"cannot reach Kafka at 127\.0\.0\.1:1"):
        await check_access(Settings(kafka_bootstrap="127.0.0.1:1"), bound_s=5)
