"""The connect URL: `tether://HOST:PORT/?fp=SHA256&token=...`.

The daemon prints one; the loader parses it. How the connection is secured
follows from the URL, and only from what it says explicitly:

- `fp=<sha256 of the daemon's certificate>` (64 hex digits): TLS, pinned to
  that certificate (the default of `tether serve`; no certificate authority);
- `tls=system`: TLS verified by the system's authorities (an ngrok HTTPS endpoint);
- `tls=off`: plain gRPC (`tether serve --insecure`); the token travels in clear.

Anything else (no `fp=`, an empty one, a bare `HOST:PORT`, `fp=` after a `#`)
is refused before a byte is sent: a shell that cuts an unquoted URL at its
first `&` must not turn a pinned URL into a plain-text one that hands the
token to whoever answers. `fp=` comes first in the printed URL, so a cut URL
keeps its fingerprint and loses the token, which fails safe. Parameter names
are case-insensitive; unknown ones are refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit

from .errors import RequestError

SCHEME = "tether"
_TLS_MODES = ("off", "system")
_KEYS = ("fp", "token", "tls")
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
_QUOTE_HINT = ("If you pasted the URL `tether serve` printed, it was probably cut at an `&` "
               "by a shell: put it in single quotes, 'tether://...'.")


def _refuse(problem: str) -> RequestError:
    return RequestError(f"{problem}; refusing to connect (nothing was sent). {_QUOTE_HINT} "
                        "Plain text only with tls=off in the URL (tether serve --insecure).")


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    token: str | None = None
    fingerprint: str | None = None
    # "pinned" with a fingerprint, "system", or "off"; None: "pinned" when a
    # fingerprint is given, else an error (plain text only when asked for).
    tls: str | None = None

    def __post_init__(self) -> None:
        tls = self.tls
        if tls is None or tls == "pinned":
            if not self.fingerprint:
                raise _refuse(f"no certificate fingerprint (fp=) for {self.target}")
            tls = "pinned"
        elif tls not in _TLS_MODES:
            raise RequestError(f"tls={tls}; expected one of pinned, {', '.join(_TLS_MODES)}")
        elif self.fingerprint:
            raise RequestError(f"a fingerprint (fp=) and tls={tls} contradict each other")
        object.__setattr__(self, "tls", tls)

    @property
    def target(self) -> str:
        """The gRPC target string, `host:port` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def url(self) -> str:
        """The URL: `fp=` (or `tls=`) first, then the token."""
        query = [("fp", self.fingerprint)] if self.tls == "pinned" else [("tls", self.tls)]
        if self.token:
            query.append(("token", self.token))
        return f"{SCHEME}://{self.target}/?{urlencode(query)}"

    def with_address(self, host: str, port: int) -> Endpoint:
        """The same credentials at another address (a tunnel, a proxy)."""
        return Endpoint(host, port, self.token, self.fingerprint, self.tls)


def parse_url(url: str) -> Endpoint:
    """Parse a connect URL; RequestError unless it says how to secure the connection.

    >>> parse_url("tether://127.0.0.1:7000/?tls=off&token=abc").port
    7000
    """
    text = url.strip()
    if "://" not in text:
        text = f"{SCHEME}://{text}"
    parts = urlsplit(text)
    if parts.scheme != SCHEME:
        raise RequestError(f"not a Tether URL: {parts.scheme}://...; expected "
                           "tether://HOST:PORT/?fp=...&token=...")
    try:
        port = parts.port
    except ValueError as exc:
        raise RequestError(f"bad port in the URL: {exc}") from None
    if not parts.hostname or port is None:
        raise RequestError("the URL needs a host and a port, like tether://127.0.0.1:7000/")
    query: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        key = key.lower()
        if key not in _KEYS:
            raise RequestError(f"unknown parameter {key!r} in the URL; expected fp, token, tls")
        if key in query:
            raise RequestError(f"{key}= appears twice in the URL")
        query[key] = value
    fingerprint = query.get("fp", "").strip().lower()
    tls = query.get("tls")
    if "fp" in query and not _FINGERPRINT.fullmatch(fingerprint):
        raise _refuse("fp= in the URL is not a SHA-256 (64 hex digits)" if fingerprint
                      else "fp= in the URL is empty")
    if tls is not None and tls not in _TLS_MODES:
        raise _refuse(f"tls={tls!r} in the URL; expected one of {', '.join(_TLS_MODES)}")
    if not fingerprint and tls is None:
        raise _refuse(f"the URL for {parts.netloc} has no certificate fingerprint (fp=)")
    return Endpoint(host=parts.hostname, port=port, token=query.get("token") or None,
                    fingerprint=fingerprint or None, tls=tls)
