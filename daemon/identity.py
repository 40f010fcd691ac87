"""What a daemon keeps across restarts, so that it comes back at the same URL.

`tether serve` started again with the same paths and host (after a crash,
`kill -9`, a reboot) reuses its port, its token and its self-signed
certificate, so the URL it prints (and loaders hold) stays valid. Kept in a
folder of the state directory named by a hash of those arguments; the
private key and token are readable by the owner only.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tether.wire.tls import CERT_NAME


def identity_dir(state_dir: Path, paths: Sequence[Path], host: str) -> Path:
    key = "\0".join([host, *sorted(str(Path(p).resolve()) for p in paths)])
    return state_dir / "daemons" / hashlib.sha256(key.encode()).hexdigest()[:16]


def _write_private(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(partial, path)  # atomic: a crash keeps the old file


def _self_signed() -> tuple[bytes, bytes]:
    """A fresh P-256 key and a 10-year self-signed certificate for it, as PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CERT_NAME)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(CERT_NAME)]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the certificate's DER bytes, hex: what the URL's `fp=` pins."""
    import ssl

    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert_pem.decode())).hexdigest()


@dataclass
class Identity:
    port: int = 0
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    folder: Path | None = field(default=None, repr=False, compare=False)

    @classmethod
    def load(cls, folder: Path) -> Identity:
        try:
            saved = json.loads((folder / "identity.json").read_text())
            identity = cls(port=int(saved["port"]), token=str(saved["token"]))
        except (OSError, ValueError, TypeError, KeyError):
            identity = cls()
        identity.folder = folder
        return identity

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_private(self.folder / "identity.json",
                       json.dumps({"port": self.port, "token": self.token}).encode())

    def tls(self) -> tuple[bytes, bytes]:
        """(key PEM, certificate PEM), made on first use and kept."""
        key_path, cert_path = self.folder / "key.pem", self.folder / "cert.pem"
        if not (key_path.exists() and cert_path.exists()):
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            key_pem, cert_pem = _self_signed()
            _write_private(key_path, key_pem)
            _write_private(cert_path, cert_pem)
        return key_path.read_bytes(), cert_path.read_bytes()


__all__ = ["CERT_NAME", "Identity", "fingerprint", "identity_dir"]
