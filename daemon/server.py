"""The daemon process: catalog + encode pool + gRPC server on one port."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc

from tether import rpc
from tether.allocator import tune_allocator
from tether.url import Endpoint

from .catalog import Catalog
from .identity import Identity, identity_dir
from .servicer import Servicer, handler
from .stats import Stats

log = logging.getLogger(__name__)

# Each open stream holds one gRPC worker thread for its whole life.
MAX_STREAMS = 64


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "tether"


@dataclass
class DaemonConfig:
    paths: Sequence[Path]
    host: str = "127.0.0.1"
    port: int = 0
    state_dir: Path | None = None
    encode_workers: int = 0  # 0: one per core, at least 2


class Daemon:
    """Serves the datasets under `config.paths` until stopped.

    >>> daemon = Daemon(DaemonConfig([Path("data")]))  # doctest: +SKIP
    >>> url = daemon.start(); daemon.wait()            # doctest: +SKIP
    """

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        tune_allocator()
        state_dir = config.state_dir or default_state_dir()
        self.identity_dir = identity_dir(state_dir, config.paths, config.host)
        self.identity = Identity.load(self.identity_dir)
        self.catalog = Catalog([Path(p) for p in config.paths], state_dir / "cache")
        workers = config.encode_workers or max(2, os.cpu_count() or 1)
        self.encode_pool = ThreadPoolExecutor(workers, thread_name_prefix="tether-encode")
        self.stats = Stats()
        self.server = grpc.server(
            ThreadPoolExecutor(MAX_STREAMS + 8, thread_name_prefix="tether-rpc"),
            handlers=[handler(Servicer(self.catalog, self.encode_pool, workers, self.stats))],
            options=rpc.SERVER_OPTIONS,
            maximum_concurrent_rpcs=MAX_STREAMS,
        )
        self.endpoint: Endpoint | None = None

    def _bind(self, port: int) -> int:
        """The port bound, or 0 when it is taken."""
        host = self.config.host
        try:
            return self.server.add_insecure_port(f"[{host}]:{port}" if ":" in host else
                                                 f"{host}:{port}")
        except RuntimeError:  # newer grpcio raises where older returned 0
            return 0

    def start(self) -> str:
        """Bind, start serving, and return the connect URL.

        With port 0 the daemon takes the port it had last time with these
        paths and host, when it is free, so that its URL survives restarts.
        """
        host, wanted = self.config.host, self.config.port
        port = 0
        if wanted == 0 and self.identity.port:
            port = self._bind(self.identity.port)
            if port == 0:
                log.warning("port %d of the previous run is taken; the URL changes",
                            self.identity.port)
        if port == 0:
            port = self._bind(wanted)
        if port == 0:
            raise OSError(f"cannot listen on {host}:{wanted}: address in use or not available")
        self.identity.port = port
        self.identity.save(self.identity_dir)
        self.server.start()
        public = socket.getfqdn() if host in ("0.0.0.0", "::") else host
        self.endpoint = Endpoint(public, port)
        log.info("listening on %s port %d, serving %s", host, port, ", ".join(self.catalog.names))
        return self.endpoint.url()

    def wait(self, timeout: float | None = None) -> bool:
        return self.server.wait_for_termination(timeout)

    def stop(self, grace: float = 2.0) -> None:
        self.server.stop(grace).wait()
        self.encode_pool.shutdown(wait=False, cancel_futures=True)
