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
direct address (LAN, port forward, Tailscale). The daemon counts what it
sends while a tunnel is open and warns at half and at 90% of a cap
(`--tunnel-cap`, 1 GB by default), once each. It counts every shard byte it
sends while the tunnel is open, through the tunnel or not: ngrok's agent
connects from loopback, like a local loader, so the two cannot be told
apart; on a machine that also serves local loaders the count runs high,
which errs on the safe side of the plan.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from tether.wire.url import Endpoint

log = logging.getLogger(__name__)

KINDS = ("ngrok", "ngrok-https")
PLAN_WARNING = ("ngrok's free plan moves about 1 GB a month, and TCP endpoints need a "
                "verified ngrok account; for large datasets use a direct address "
                "(LAN, port forward, Tailscale)")
DEFAULT_CAP = 1000**3  # ngrok's free plan: about 1 GB a month
CAP_MARKS = ((0.5, "half"), (0.9, "90%"))  # each warned about once
POLL_SECONDS = 1.0


def human_bytes(n: int) -> str:
    """512 MB, 1 GB, 1.5 GB: decimal units, as ngrok counts, three digits at most."""
    for unit, size in (("GB", 1000**3), ("MB", 1000**2), ("kB", 1000)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"


class ByteCap:
    """Warns, once each, when the bytes sent since it started pass half and 90% of `cap`.

    `sent` is the daemon's running total (Stats.bytes_sent); it is read every
    POLL_SECONDS by a thread, and once more on close(), so a stream that ends
    just past a mark is still reported.
    """

    def __init__(self, kind: str, cap: int, sent: Callable[[], int]) -> None:
        self.kind, self.cap, self._sent = kind, cap, sent
        self._base = sent()  # only what goes out while the tunnel is open
        self.warned: list[str] = []  # the marks passed, in order
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="tether-tunnel-cap",
                                        daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self.check()

    def check(self) -> None:
        carried = self._sent() - self._base
        for fraction, words in CAP_MARKS:
            if carried >= fraction * self.cap and words not in self.warned:
                self.warned.append(words)
                log.warning("the %s tunnel has carried %s, %s of the %s cap (--tunnel-cap); "
                            "ngrok's free plan moves about 1 GB a month%s", self.kind,
                            human_bytes(carried), words, human_bytes(self.cap),
                            "" if fraction < 0.9 else ": for more, use a direct address "
                            "(LAN, port forward, Tailscale; docs/colab.md)")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.check()


@dataclass
class Tunnel:
    public_url: str
    endpoint: Endpoint  # what the loader connects to
    meter: ByteCap | None = None

    def close(self) -> None:
        from pyngrok import ngrok

        if self.meter is not None:
            self.meter.close()
        ngrok.disconnect(self.public_url)


class TunnelError(OSError):
    """The tunnel could not be opened; its message is one line, for the user."""


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def open_tunnel(kind: str, local_port: int, daemon: Endpoint,
                sent: Callable[[], int] | None = None, cap: int = DEFAULT_CAP) -> Tunnel:
    """Open the tunnel; `daemon` holds the token and fingerprint to carry over.

    With `sent` (the daemon's bytes sent so far), warn as they near `cap` (ByteCap).

    TunnelError (one line) when pyngrok is missing, or ngrok cannot be
    installed or reached (no network, no authtoken, an account without TCP).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown tunnel {kind!r}; choose one of {', '.join(KINDS)}")
    if cap <= 0:  # before ngrok is asked for anything
        raise TunnelError(f"--tunnel-cap must be more than 0 bytes, got {cap}")
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
            tunnel = _connect(ngrok, kind, local_port, daemon)
    except (PyngrokError, OSError) as exc:
        raise TunnelError(
            f"cannot open the {kind} tunnel: {_one_line(exc)}. Check this machine's network "
            "and your ngrok authtoken (ngrok config add-authtoken ..., or NGROK_AUTHTOKEN)"
        ) from None
    if sent is not None:
        tunnel.meter = ByteCap(kind, cap, sent)
    return tunnel


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
