"""What a daemon keeps across restarts, so that it comes back at the same URL.

`tether serve` started again with the same paths and host (after a crash,
`kill -9`, a reboot) reuses its port, its token and its self-signed
certificate, so the URL it prints (and loaders hold) stays valid. Kept in a
folder of the state directory named by a hash of those arguments; the
folders are `0700` and every file in them `0600`.

One daemon per identity: a daemon holds an exclusive lock on the folder's
`lock` file for its whole life (released by the kernel when it exits, even
by `kill -9`). A second `tether serve` with the same paths and host is
refused; otherwise it would bind another port and overwrite the saved one,
and the first, once restarted, would come back on the second's port.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tether.wire.portable import try_lock
from tether.wire.tls import CERT_NAME


def identity_dir(state_dir: Path, paths: Sequence[Path], host: str) -> Path:
    key = "\0".join([host, *sorted(str(Path(p).resolve()) for p in paths)])
    return state_dir / "daemons" / hashlib.sha256(key.encode()).hexdigest()[:16]


MIN_TOKEN_BITS = 128
_CLASSES = (string.ascii_lowercase, string.ascii_uppercase, string.digits)


def new_token() -> str:
    """A random token: 32 bytes, 256 bits, URL-safe."""
    return secrets.token_urlsafe(32)


def token_bits(token: str) -> float:
    """A generous estimate of a token's entropy: length x log2(alphabet of its classes).

    Classes: lower case, upper case, digits, and the rest (32 punctuation
    marks). It cannot see a dictionary word or a pattern; it does catch the
    short and the human-made, and a token made by `secrets` passes.
    """
    alphabet = sum(len(c) for c in _CLASSES if any(ch in c for ch in token))
    if any(not ch.isalnum() for ch in token):
        alphabet += len(string.punctuation)
    return len(token) * math.log2(alphabet) if alphabet > 1 else 0.0


def check_token(token: str) -> None:
    """ValueError unless `token` is printable ASCII without spaces and of >= 128 bits."""
    if not token or any(ch not in string.printable or ch.isspace() for ch in token):
        raise ValueError("the token must be printable ASCII without spaces")
    bits = token_bits(token)
    if bits < MIN_TOKEN_BITS or len(set(token)) < 10:
        raise ValueError(
            f"the token is too weak (about {bits:.0f} bits by its length and characters, "
            f"{len(set(token))} distinct characters); at least {MIN_TOKEN_BITS} bits are needed, "
            "e.g. 22 random letters, digits, - and _: "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'")


def private_dir(path: Path) -> Path:
    """Make `path` (and missing parents) owner-only, 0700; an existing folder is chmod-ed."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


class IdentityLock:
    """The exclusive lock on an identity folder, held until `release()` or exit."""

    def __init__(self, folder: Path) -> None:
        private_dir(folder.parent)
        private_dir(folder)
        path = folder / "lock"
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if not try_lock(self._fd):
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            raise OSError(
                f"another tether serve (pid {holder}) is already serving these paths with "
                f"this host (identity {folder}); stop it first, or give this one another "
                "--state-dir (it then gets its own port, token and certificate)")
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing drops the flock
            self._fd = -1


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
    token: str = field(default_factory=new_token)
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
        private_dir(self.folder)
        _write_private(self.folder / "identity.json",
                       json.dumps({"port": self.port, "token": self.token}).encode())

    def tls(self) -> tuple[bytes, bytes]:
        """(key PEM, certificate PEM), made on first use and kept."""
        key_path, cert_path = self.folder / "key.pem", self.folder / "cert.pem"
        if not (key_path.exists() and cert_path.exists()):
            private_dir(self.folder)
            key_pem, cert_pem = _self_signed()
            _write_private(key_path, key_pem)
            _write_private(cert_path, cert_pem)
        return key_path.read_bytes(), cert_path.read_bytes()


__all__ = ["CERT_NAME", "Identity", "IdentityLock", "check_token", "fingerprint",
           "identity_dir", "new_token", "private_dir", "token_bits"]
