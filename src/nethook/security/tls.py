"""TLS: uvicorn options from the config, and certificates for ``nethook init --self-signed``.

``cryptography`` is imported lazily: only making certificates needs it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import TLSConfig
from ..exceptions import ConfigError


def uvicorn_options(tls: TLSConfig | None) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.Config``; with ``client_ca`` a client cert is required."""
    if tls is None:
        return {}
    for label, path in (
        ("certfile", tls.certfile),
        ("keyfile", tls.keyfile),
        ("client_ca", tls.client_ca),
    ):
        if path is not None and not path.is_file():
            raise ConfigError(f"server.tls.{label}: {path} does not exist")
    opts: dict[str, Any] = {"ssl_certfile": str(tls.certfile), "ssl_keyfile": str(tls.keyfile)}
    if tls.client_ca is not None:
        opts["ssl_ca_certs"] = str(tls.client_ca)
        opts["ssl_cert_reqs"] = ssl.CERT_REQUIRED
    return opts


@dataclass(frozen=True, slots=True)
class Pem:
    key: bytes
    cert: bytes


def _crypto() -> Any:
    try:
        from cryptography import x509
    except ImportError as exc:  # pragma: no cover - cryptography is a dependency
        raise ConfigError(
            "certificates need the 'cryptography' package: pip install cryptography"
        ) from exc
    return x509


def _name(common_name: str) -> Any:
    x509 = _crypto()
    from cryptography.x509.oid import NameOID

    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nethook"),
        ]
    )


def _san(names: list[str]) -> Any:
    x509 = _crypto()
    entries: list[Any] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _issue(
    subject: str, issuer: Pem | None, *, ca: bool, names: list[str], client: bool, days: int
) -> Pem:
    x509 = _crypto()
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    if issuer is None:
        issuer_key: Any = key
        issuer_name = _name(subject)
    else:
        issuer_key = serialization.load_pem_private_key(issuer.key, None)
        issuer_name = x509.load_pem_x509_certificate(issuer.cert).subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(_san(names), critical=False)
    if not ca:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    cert = builder.sign(issuer_key, hashes.SHA256())
    return Pem(
        key=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        cert=cert.public_bytes(serialization.Encoding.PEM),
    )


def self_signed(hostname: str, days: int = 825) -> Pem:
    """A self-signed server certificate for ``hostname`` (plus localhost and 127.0.0.1/::1)."""
    names = list(dict.fromkeys([hostname, "localhost", "127.0.0.1", "::1"]))
    return _issue(hostname, None, ca=False, names=names, client=False, days=days)


def make_ca(name: str = "nethook client CA", days: int = 3650) -> Pem:
    return _issue(name, None, ca=True, names=[], client=False, days=days)


def client_cert(ca: Pem, name: str, days: int = 825) -> Pem:
    """A client certificate signed by ``ca`` (for mTLS senders such as curl)."""
    return _issue(name, ca, ca=False, names=[], client=True, days=days)


def write_pem(folder: Path, stem: str, pem: Pem) -> tuple[Path, Path]:
    """Write ``stem.key`` (mode 0600) and ``stem.pem``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = folder / f"{stem}.key", folder / f"{stem}.pem"
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem.key)
    cert_path.write_bytes(pem.cert)
    return key_path, cert_path
