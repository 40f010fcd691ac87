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

import contextlib
import logging
import sys
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


class TunnelError(OSError):
    """The tunnel could not be opened; its message is one line, for the user."""


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def open_tunnel(kind: str, local_port: int, daemon: Endpoint) -> Tunnel:
    """Open the tunnel; `daemon` holds the token and fingerprint to carry over.

    TunnelError (one line) when pyngrok is missing, or ngrok cannot be
    installed or reached (no network, no authtoken, an account without TCP).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown tunnel {kind!r}; choose one of {', '.join(KINDS)}")
    try:
        from pyngrok import ngrok
        from pyngrok.exception import PyngrokError
    except ImportError as exc:
        raise TunnelError(f"--tunnel needs pyngrok ({exc}): pip install 'tether[daemon]'") \
            from None
    log.warning(PLAN_WARNING)
    try:
        # pyngrok prints its agent's download progress on stdout, which carries
        # only the URL (spawn.py reads its first line): send it to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            return _connect(ngrok, kind, local_port, daemon)
    except (PyngrokError, OSError) as exc:
        raise TunnelError(
            f"cannot open the {kind} tunnel: {_one_line(exc)}. Check this machine's network "
            "and your ngrok authtoken (ngrok config add-authtoken ..., or NGROK_AUTHTOKEN)"
        ) from None


def _connect(ngrok, kind: str, local_port: int, daemon: Endpoint) -> Tunnel:
    if kind == "ngrok":
        tunnel = ngrok.connect(str(local_port), "tcp")
        parts = urlsplit(tunnel.public_url)  # tcp://0.tcp.ngrok.io:12345
        endpoint = daemon.with_address(parts.hostname, parts.port)
    else:  # ngrok-https
        tunnel = ngrok.connect(str(local_port), "http", schemes=["https"],
                               app_protocol="http2")
        parts = urlsplit(tunnel.public_url)  # https://abc.ngrok-free.app
        endpoint = Endpoint(parts.hostname, parts.port or 443, daemon.token, None, "system")
    log.info("tunnel open: %s -> localhost:%d", tunnel.public_url, local_port)
    return Tunnel(tunnel.public_url, endpoint)
