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

A certificate that matched is kept for the rest of the process, keyed by the
address, the proxy and the fingerprint (`_PINNED`): later loaders and clients
of that daemon skip the extra connection (a round trip or two before the
first batch). The cache cannot bypass the pin: a URL with another
fingerprint misses it and fetches, an entry is hashed again when used, and
gRPC itself still trusts only that certificate, so a daemon presenting
another fails the handshake; after such a failure the loader forgets the
entry (`forget`) and its reconnect fetches and compares anew.
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

_Key = tuple[str, int, str, str]  # host, port, proxy ("" for none), fingerprint
_PINNED: dict[_Key, bytes] = {}  # DER certificates that matched their URL's fingerprint


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


def _key(endpoint: Endpoint, proxy: Proxy | None) -> _Key:
    return (endpoint.host, endpoint.port, proxy.url if proxy is not None else "",
            endpoint.fingerprint or "")


def _matches(der: bytes, endpoint: Endpoint) -> bool:
    return hmac.compare_digest(hashlib.sha256(der).hexdigest(), endpoint.fingerprint or "")


def forget(endpoint: Endpoint) -> None:
    """Drop the certificates kept for `endpoint` (through any proxy): its next
    channel fetches and compares anew."""
    for key in [k for k in list(_PINNED) if k[:2] == (endpoint.host, endpoint.port)]:
        _PINNED.pop(key, None)


def pinned_credentials(endpoint: Endpoint,
                       proxy: Proxy | None = None) -> grpc.ChannelCredentials:
    """Credentials trusting only the certificate whose SHA-256 is the URL's `fp=`:
    the one this process already checked, else the one the daemon presents now."""
    key = _key(endpoint, proxy)
    der = _PINNED.get(key)
    if der is None or not _matches(der, endpoint):
        der = fetch_certificate(endpoint.host, endpoint.port, proxy=proxy)
        if not _matches(der, endpoint):
            seen = hashlib.sha256(der).hexdigest()
            raise SecurityError(
                f"the daemon at {endpoint.target} presents certificate {seen[:16]}..., not "
                f"the {(endpoint.fingerprint or '')[:16]}... in the URL: refusing to connect. "
                "Use the URL `tether serve` printed; if it did print this one, someone is in "
                "between" + (f" ({proxy} may be reading the traffic)." if proxy is not None
                             else "."))
        _PINNED[key] = der
    return grpc.ssl_channel_credentials(root_certificates=ssl.DER_cert_to_PEM_cert(der).encode())
