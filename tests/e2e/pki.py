"""Throwaway certificates for the transport tests, made with the `cryptography` package.

Three CAs, each with EC P-256 keys (quick to generate):

- `ca` issues the server certificate (`localhost` and 127.0.0.1 as subject alternative names);
  clients trust it.
- `clients_ca` issues client certificates; a verifying listener names it as `ca`. It issues
  `client` (valid for a day either side of now) and `expired` (validity ended yesterday).
- `rogue_ca` is trusted by nobody: it issues `untrusted`, a client certificate that is valid
  in time but unknown to the broker, and a client that trusts only it cannot verify the server.

Every file is PEM; `Pki.make(dir)` writes them all and returns their paths.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class KeyPair:
    """A certificate file and its private key file."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Path
    clients_ca: Path
    rogue_ca: Path
    server: KeyPair
    client: KeyPair
    expired: KeyPair
    untrusted: KeyPair

    @classmethod
    def make(cls, directory: Path) -> "Pki":
        directory.mkdir(parents=True, exist_ok=True)
        now = dt.datetime.now(dt.timezone.utc)
        ca = _Issuer.new("nanomq test server CA", now)
        clients_ca = _Issuer.new("nanomq test clients CA", now)
        rogue_ca = _Issuer.new("nanomq test rogue CA", now)
        server = ca.issue(
            "localhost", now - DAY, now + DAY, ExtendedKeyUsageOID.SERVER_AUTH,
            san=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        )
        client = clients_ca.issue("client", now - DAY, now + DAY,
                                  ExtendedKeyUsageOID.CLIENT_AUTH)
        expired = clients_ca.issue("expired", now - 30 * DAY, now - DAY,
                                   ExtendedKeyUsageOID.CLIENT_AUTH)
        untrusted = rogue_ca.issue("untrusted", now - DAY, now + DAY,
                                   ExtendedKeyUsageOID.CLIENT_AUTH)
        return cls(
            ca=_write_cert(directory / "ca.crt", ca.cert),
            clients_ca=_write_cert(directory / "clients-ca.crt", clients_ca.cert),
            rogue_ca=_write_cert(directory / "rogue-ca.crt", rogue_ca.cert),
            server=_write_pair(directory, "server", server),
            client=_write_pair(directory, "client", client),
            expired=_write_pair(directory, "expired", expired),
            untrusted=_write_pair(directory, "untrusted", untrusted),
        )


@dataclass(frozen=True)
class _Issuer:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def new(cls, name: str, now: dt.datetime) -> "_Issuer":
        key = ec.generate_private_key(ec.SECP256R1())
        subject = _name(name)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - 365 * DAY)
            .not_valid_after(now + 365 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def issue(self, name: str, not_before: dt.datetime, not_after: dt.datetime, usage,
              san: list | None = None) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return key, builder.sign(self.key, hashes.SHA256())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
        crl_sign=cert_sign, encipher_only=False, decipher_only=False,
    )


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _write_pair(directory: Path, name: str, pair) -> KeyPair:
    key, cert = pair
    key_path = directory / f"{name}.key"
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    key_path.chmod(0o600)
    return KeyPair(cert=_write_cert(directory / f"{name}.crt", cert), key=key_path)
