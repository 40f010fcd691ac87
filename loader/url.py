"""The connect URL: `tether://HOST:PORT/?token=...&fp=SHA256`.

The daemon prints one; the loader parses it. A bare `HOST:PORT` is accepted too.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

from .errors import RequestError

SCHEME = "tether"


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    token: str | None = None
    fingerprint: str | None = None

    @property
    def target(self) -> str:
        """The gRPC target string, `host:port` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def url(self) -> str:
        query = {k: v for k, v in (("token", self.token), ("fp", self.fingerprint)) if v}
        return f"{SCHEME}://{self.target}/" + (f"?{urlencode(query)}" if query else "")


def parse_url(url: str) -> Endpoint:
    """Parse a connect URL.

    >>> parse_url("tether://127.0.0.1:7000/?token=abc").port
    7000
    """
    text = url.strip()
    if "://" not in text:
        text = f"{SCHEME}://{text}"
    parts = urlsplit(text)
    if parts.scheme != SCHEME:
        raise RequestError(f"not a Tether URL: {url!r}; expected tether://HOST:PORT/?token=...")
    try:
        port = parts.port
    except ValueError as exc:
        raise RequestError(f"bad port in {url!r}: {exc}") from None
    if not parts.hostname or port is None:
        raise RequestError(f"URL {url!r} needs a host and a port, like tether://127.0.0.1:7000/")
    query = parse_qs(parts.query)
    return Endpoint(
        host=parts.hostname,
        port=port,
        token=query.get("token", [None])[0],
        fingerprint=query.get("fp", [None])[0],
    )
