"""`--tunnel ngrok`: reach a daemon behind NAT through ngrok, with pyngrok.

Two kinds of endpoint:

- `ngrok` (TCP): ngrok forwards raw TCP, so TLS runs end to end between the
  loader and the daemon, pinned by the URL's fingerprint as on a direct
  connection. ngrok's TCP endpoints need a verified (card on file) account.
- `ngrok-https`: ngrok's edge ends TLS with its own certificate (the loader
  checks it against the system's authorities) and speaks HTTP/2 to a
  loopback-only plain port of the daemon. ngrok can see the traffic; the
  token still guards every call.

ngrok's free plan moves about 1 GB a month: for large datasets prefer a
direct address (LAN, port forward, Tailscale).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from tether.wire.url import Endpoint

log = logging.getLogger(__name__)

KINDS = ("ngrok", "ngrok-https")
PLAN_WARNING = ("ngrok's free plan moves about 1 GB a month, and TCP endpoints need a "
                "verified ngrok account; for large datasets use a direct address "
                "(LAN, port forward, Tailscale)")


@dataclass
class Tunnel:
    public_url: str
    endpoint: Endpoint  # what the loader connects to

    def close(self) -> None:
        from pyngrok import ngrok

        ngrok.disconnect(self.public_url)


def open_tunnel(kind: str, local_port: int, daemon: Endpoint) -> Tunnel:
    """Open the tunnel; `daemon` holds the token and fingerprint to carry over."""
    from pyngrok import ngrok

    log.warning(PLAN_WARNING)
    if kind == "ngrok":
        tunnel = ngrok.connect(str(local_port), "tcp")
        parts = urlsplit(tunnel.public_url)  # tcp://0.tcp.ngrok.io:12345
        endpoint = daemon.with_address(parts.hostname, parts.port)
    elif kind == "ngrok-https":
        tunnel = ngrok.connect(str(local_port), "http", schemes=["https"],
                               app_protocol="http2")
        parts = urlsplit(tunnel.public_url)  # https://abc.ngrok-free.app
        endpoint = Endpoint(parts.hostname, parts.port or 443, daemon.token, None, "system")
    else:
        raise ValueError(f"unknown tunnel {kind!r}; choose one of {', '.join(KINDS)}")
    log.info("tunnel open: %s -> localhost:%d", tunnel.public_url, local_port)
    return Tunnel(tunnel.public_url, endpoint)
