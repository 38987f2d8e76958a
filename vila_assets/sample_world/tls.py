"""Certificates for an https image web on 127.0.0.1: a test CA and server certificates good and bad.

``TestPki(dir)`` writes a CA and, per ``kind``, a server key + certificate:

- ``valid``: signed by the CA, for ``127.0.0.1`` and ``localhost``, valid now;
- ``self-signed``: for the same names, signed by itself (no CA vouches for it);
- ``expired``: signed by the CA, expired yesterday;
- ``wrong-host``: signed by the CA, for ``other.example`` only.

``server_context(kind)`` is an ``ssl.SSLContext`` for ``ImageWeb(tls=...)``; a client trusts the CA
through ``client_context()`` (in process) or ``SSL_CERT_FILE=<ca_file>`` (a subprocess: OpenSSL reads it
when the default verify paths load). Keys are small and generated per directory: test use only.
Uses ``cryptography`` (a dependency of the dev set's moto).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

KINDS = ("valid", "self-signed", "expired", "wrong-host")


class TestPki:
    __test__ = False  # not a pytest class

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca_file = self.dir / "ca.pem"
        self._ca_key, self._ca_cert = self._make_ca()

    def _make_ca(self):
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        key = _key()
        name = _name("vila-assets test CA")
        now = _now()
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, _sha256())
        )
        self.ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return key, cert

    def files(self, kind: str) -> tuple[Path, Path]:
        """(certificate chain, key) PEM files for a server certificate of ``kind``."""
        if kind not in KINDS:
            raise ValueError(f"unknown certificate kind {kind!r}; expected one of {KINDS}")
        cert_file, key_file = self.dir / f"{kind}.pem", self.dir / f"{kind}.key"
        if not cert_file.exists():
            self._write_server(kind, cert_file, key_file)
        return cert_file, key_file

    def _write_server(self, kind: str, cert_file: Path, key_file: Path) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        key = _key()
        now = _now()
        hosts = ["other.example"] if kind == "wrong-host" else ["127.0.0.1", "localhost"]
        start, end = (now - dt.timedelta(days=10), now - dt.timedelta(days=1)) if kind == "expired" else (
            now - dt.timedelta(days=1), now + dt.timedelta(days=30))
        issuer_key, issuer = (key, _name(hosts[0])) if kind == "self-signed" else (self._ca_key, self._ca_cert.subject)
        names = [x509.IPAddress(ipaddress.ip_address(h)) if h[0].isdigit() else x509.DNSName(h) for h in hosts]
        cert = (
            x509.CertificateBuilder().subject_name(_name(hosts[0])).issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(issuer_key, _sha256())
        )
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))

    def server_context(self, kind: str) -> ssl.SSLContext:
        cert_file, key_file = self.files(kind)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_file, key_file)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts only the test CA (and checks host names)."""
        return ssl.create_default_context(cafile=str(self.ca_file))


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str):
    from cryptography import x509

    return x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, common_name)])


def _sha256():
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
