"""The connect URL: `tether://HOST:PORT/?token=...&fp=SHA256`.

The daemon prints one; the loader parses it. How the connection is secured
follows from the URL:

- `fp=<sha256 of the daemon's certificate>`: TLS, pinned to that certificate
  (the default of `tether serve`; no certificate authority involved);
- `tls=system`: TLS verified by the system's authorities (an ngrok HTTPS endpoint);
- `tls=off`, or neither: plain gRPC (`tether serve --insecure`).

A bare `HOST:PORT` is accepted too.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

from .errors import RequestError

SCHEME = "tether"
_TLS_MODES = ("off", "system")


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    token: str | None = None
    fingerprint: str | None = None
    tls: str = "off"  # "pinned" with a fingerprint, "system", or "off"

    @property
    def target(self) -> str:
        """The gRPC target string, `host:port` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def url(self) -> str:
        query = {k: v for k, v in (("token", self.token), ("fp", self.fingerprint)) if v}
        if self.tls == "system":
            query["tls"] = "system"
        return f"{SCHEME}://{self.target}/" + (f"?{urlencode(query)}" if query else "")

    def with_address(self, host: str, port: int) -> Endpoint:
        """The same credentials at another address (a tunnel, a proxy)."""
        return Endpoint(host, port, self.token, self.fingerprint, self.tls)


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
        raise RequestError(f"not a Tether URL: {parts.scheme}://...; expected "
                           "tether://HOST:PORT/?token=...")
    try:
        port = parts.port
    except ValueError as exc:
        raise RequestError(f"bad port in the URL: {exc}") from None
    if not parts.hostname or port is None:
        raise RequestError("the URL needs a host and a port, like tether://127.0.0.1:7000/")
    query = parse_qs(parts.query)
    fingerprint = query.get("fp", [None])[0]
    tls = query.get("tls", ["off"])[0]
    if tls not in _TLS_MODES:
        raise RequestError(f"tls={tls} in the URL; expected one of {', '.join(_TLS_MODES)}")
    return Endpoint(
        host=parts.hostname,
        port=port,
        token=query.get("token", [None])[0],
        fingerprint=fingerprint.lower() if fingerprint else None,
        tls="pinned" if fingerprint else tls,
    )
