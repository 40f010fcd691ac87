"""HTTP CONNECT proxies: which one a connection takes, and a tunnel through one.

A proxy given as `proxy="http://HOST:PORT"` (Tailscale's userspace
networking offers one on Colab) or in the environment carries the
connection as an opaque CONNECT tunnel: TLS still runs end to end between
the loader and the daemon, so the fingerprint in the URL is checked as on a
direct connection, and a proxy that answers with its own certificate is
refused (tls.py).

The rules are grpcio's own (1.66 to 1.85 checked), so that the certificate
fetch before a pinned connection and gRPC's channel take the same path:
`proxy=` first, else the environment's `grpc_proxy`, `https_proxy`,
`http_proxy` (lowercase only, first set wins); no proxy for a target that
`no_proxy` names (comma-separated suffixes of the host, or CIDR ranges),
even a `proxy=` one. Loopback targets are not exempt by default.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import ConnectionFailed, RequestError

ENV_VARS = ("grpc_proxy", "https_proxy", "http_proxy")  # grpcio's order
_MAX_REPLY = 16 << 10  # a CONNECT reply's head; more is not a proxy talking


@dataclass(frozen=True)
class Proxy:
    host: str
    port: int
    source: str  # where it came from, for messages: "proxy=" or an env var's name

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __str__(self) -> str:
        return f"the proxy at {self.url} ({self.source})"


def parse_proxy(url: str, source: str = "proxy=") -> Proxy:
    """`http://HOST:PORT`, nothing more; RequestError saying what to write otherwise.

    >>> parse_proxy("http://localhost:1055").port
    1055
    """
    usage = (f"{source}: expected http://HOST:PORT, like http://localhost:1055 "
             "(Tailscale's --outbound-http-proxy-listen)")
    parts = urlsplit(url.strip())
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http":
        raise RequestError(f"{usage}; got {url!r} (only plain http:// proxies, which carry "
                           "the TLS connection as an opaque CONNECT tunnel)")
    if parts.username is not None or parts.password is not None:
        raise RequestError(f"{usage}; proxies that need a password are not supported")
    if not parts.hostname or port is None or parts.path not in ("", "/") or parts.query \
            or parts.fragment:
        raise RequestError(f"{usage}; got {url!r}")
    return Proxy(parts.hostname, port, source)


def _exempt(host: str, no_proxy: str) -> bool:
    """Whether `no_proxy` names `host`, as grpcio reads it."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in (e.strip() for e in no_proxy.split(",")):
        if not entry:
            continue
        if "/" in entry:
            if address is not None:
                try:
                    if address in ipaddress.ip_network(entry, strict=False):
                        return True
                except ValueError:
                    pass
        elif host.lower().endswith(entry.lower()):
            return True
    return False


def proxy_for(host: str, proxy: str | None = None) -> Proxy | None:
    """The proxy a connection to `host` takes: `proxy`, else the environment's; None if none.

    >>> proxy_for("10.0.0.5", "http://localhost:1055").url
    'http://localhost:1055'
    """
    chosen = parse_proxy(proxy) if proxy is not None else None
    if _exempt(host, os.environ.get("no_proxy", "")):
        return None
    if chosen is None:
        for name in ENV_VARS:
            if value := os.environ.get(name):
                return parse_proxy(value, f"the {name} environment variable (unset it, or "
                                   f"add {host} to no_proxy, to connect directly)")
    return chosen


def connect_through(proxy: Proxy, host: str, port: int, timeout: float) -> socket.socket:
    """A socket tunnelled to host:port by `proxy` (HTTP CONNECT); ConnectionFailed if not."""
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        sock = socket.create_connection((proxy.host, proxy.port), timeout=timeout)
    except OSError as exc:
        raise ConnectionFailed(f"cannot reach {proxy}: {exc} (is it running? For Tailscale: "
                               "tailscale up --outbound-http-proxy-listen=localhost:1055)") \
            from None
    try:
        sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        head = b""
        while not head.endswith(b"\r\n\r\n"):  # byte by byte: TLS bytes follow the head
            byte = sock.recv(1)
            if not byte or len(head) > _MAX_REPLY:
                raise OSError("it closed the connection without a complete answer")
            head += byte
    except OSError as exc:
        sock.close()
        raise ConnectionFailed(f"{proxy} failed to open a tunnel to {target}: {exc}") from None
    status = head.split(b"\r\n", 1)[0].decode("latin-1").strip()
    fields = status.split(None, 2)
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].startswith("2"):
        sock.close()
        raise ConnectionFailed(f"{proxy} refused to open a tunnel to {target}: {status!r}. "
                               "Check that it allows CONNECT to that host and port, or "
                               "connect without it")
    return sock
