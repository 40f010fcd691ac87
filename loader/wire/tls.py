"""TLS pinned to the certificate fingerprint in the URL.

The daemon's certificate is self-signed, so no authority vouches for it;
the URL does. Before gRPC connects, the loader fetches the certificate the
daemon presents and compares its SHA-256 with `fp=`: a mismatch (a man in
the middle, or the wrong daemon) fails here, before any request, token or
data is sent. gRPC then trusts exactly that certificate as its only root,
so a different one offered to gRPC itself fails its handshake too.

Through an HTTP proxy the certificate is fetched through the same CONNECT
tunnel gRPC uses (proxy.py): the proxy sees only TLS, and one that answers
with a certificate of its own fails the comparison like any man in the middle.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import ssl

import grpc

from .errors import ConnectionFailed, SecurityError
from .proxy import Proxy, connect_through
from .url import Endpoint

CERT_NAME = "tether-daemon"  # the name the daemon's certificate is issued to


def fetch_certificate(host: str, port: int, timeout: float = 10.0,
                      proxy: Proxy | None = None) -> bytes:
    """The DER certificate the server at host:port presents (unverified), through `proxy`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])  # gRPC servers insist on HTTP/2
    try:
        sock = (connect_through(proxy, host, port, timeout) if proxy is not None
                else socket.create_connection((host, port), timeout=timeout))
        with sock, context.wrap_socket(sock, server_hostname=host) as tls:
            return tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        through = f" through {proxy}" if proxy is not None else ""
        raise ConnectionFailed(f"cannot reach {host}:{port} over TLS{through}: {exc} "
                               "(is `tether serve` running and the URL right?)") from None


def pinned_credentials(endpoint: Endpoint,
                       proxy: Proxy | None = None) -> grpc.ChannelCredentials:
    der = fetch_certificate(endpoint.host, endpoint.port, proxy=proxy)
    seen = hashlib.sha256(der).hexdigest()
    if not hmac.compare_digest(seen, endpoint.fingerprint or ""):
        raise SecurityError(
            f"the daemon at {endpoint.target} presents certificate {seen[:16]}..., not the "
            f"{(endpoint.fingerprint or '')[:16]}... in the URL: refusing to connect. Use the "
            "URL `tether serve` printed; if it did print this one, someone is in between"
            + (f" ({proxy} may be reading the traffic)." if proxy is not None else ".")
        )
    return grpc.ssl_channel_credentials(root_certificates=ssl.DER_cert_to_PEM_cert(der).encode())
