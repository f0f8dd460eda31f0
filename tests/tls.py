"""Certificates for the TLS tests, made with the openssl command into a folder."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


def _openssl(*arguments: str) -> None:
    subprocess.run(["openssl", *arguments], check=True, capture_output=True, timeout=60)


@dataclass(frozen=True, slots=True)
class Authority:
    """A CA: ``cert`` is what a client trusts; ``issue`` signs certificates."""

    cert: Path
    key: Path

    @classmethod
    def create(cls, folder: Path, name: str) -> Authority:
        folder.mkdir(parents=True, exist_ok=True)
        cert, key = folder / f"{name}.pem", folder / f"{name}.key"
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert),
        )  # fmt: skip
        return cls(cert, key)

    def issue(self, folder: Path, name: str, alt_names: str) -> tuple[Path, Path]:
        """A certificate for ``alt_names`` (e.g. ``IP:127.0.0.1``) and its key
        (unencrypted PKCS#8, which Kafka's PEM keystore reads): (cert, key)."""
        cert, key, request = folder / f"{name}.pem", folder / f"{name}.key", folder / f"{name}.csr"
        extensions = folder / f"{name}.ext"
        extensions.write_text(f"subjectAltName={alt_names}\n")
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", str(key), "-out", str(request),
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", str(request), "-CA", str(self.cert), "-CAkey", str(self.key),
            "-CAcreateserial", "-days", "2", "-extfile", str(extensions), "-out", str(cert),
        )  # fmt: skip
        return cert, key
