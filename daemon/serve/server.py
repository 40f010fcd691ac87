"""The daemon process: catalog + encode pool + gRPC server on one port."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from tether.wire import rpc
from tether.wire.allocator import tune_allocator
from tether.wire.preload import preload
from tether.wire.url import Endpoint

from ..prepare.catalog import Catalog
from ..prepare.preparation import Preparation, is_database_url
from ..prepare.remote_sql import stop_query_processes
from ..prepare.workers import stop_all as stop_transform_workers
from ..stream.budget import MemoryBudget
from ..stream.stats import Stats
from .auth import TokenAuth
from .files import SharedFiles
from .identity import Identity, IdentityLock, check_token, fingerprint, identity_dir, new_token
from .results import DEFAULT_MAX_BYTES, ResultsSink
from .servicer import Servicer, handler
from .tunnel import DEFAULT_CAP as DEFAULT_TUNNEL_CAP
from .tunnel import Tunnel, open_tunnel

log = logging.getLogger(__name__)

# Each open stream holds one gRPC worker thread for its whole life.
MAX_STREAMS = 64

# Descriptors kept out of the connection cap: dataset files, caches, results,
# the listening sockets, gRPC's own pipes.
RESERVED_FILES = 256
MAX_CONNECTIONS = 4096  # a connection costs memory too (buffers, TLS state)


def raise_open_files_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; the soft limit now.

    The common soft limit, 1,024, is what 1,100 idle TCP connections need to
    lock every real client out (accept() fails with EMFILE); the hard limit is
    usually far higher and needs no privilege to use.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    for target in (wanted, 1 << 16, 10_240):  # macOS refuses more than OPEN_MAX
        if target <= soft:
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
            break
        except (ValueError, OSError):
            continue
    return soft


def connection_cap(open_files: int) -> int:
    """How many connections gRPC accepts at once, leaving RESERVED_FILES descriptors free."""
    return max(MAX_STREAMS, min(MAX_CONNECTIONS, open_files - RESERVED_FILES))


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
    # None: the one kept in the identity, made on first start. One given here
    # (TETHER_TOKEN, --token-file) is for this run only: never saved.
    token: str | None = None
    new_token: bool = False  # replace the kept token with a fresh random one (rotation)
    insecure: bool = False  # plain gRPC instead of pinned TLS
    tunnel: str | None = None  # "ngrok" or "ngrok-https"
    tunnel_cap: int = DEFAULT_TUNNEL_CAP  # bytes; warned about at half and 90% (tunnel.py)
    results_dir: Path | None = None  # None: STATE_DIR/results
    shares: tuple[tuple[str, Path], ...] = ()  # --share NAME=PATH: read-only downloads
    max_upload: int = DEFAULT_MAX_BYTES
    follow_symlinks: bool = False  # serve what links point at outside the served folders
    preparation: Preparation = field(default_factory=Preparation)  # --sql, --transform, ...
    images_column: str | None = None  # the CSV/Parquet files' column of image paths (--images)
    max_memory: int | None = None  # every stream's window together; None: see budget.py
    stall_seconds: float | None = None  # cancel a stream whose client stopped reading


_PROBES = {socket.AF_INET: "192.0.2.1", socket.AF_INET6: "2001:db8::1"}  # never contacted


def local_addresses(families: tuple[int, ...] = (socket.AF_INET,)) -> list[str]:
    """This machine's addresses other than loopback and link-local, best first.

    From the host name's resolution and from the source address the routing
    table picks for an outside address (a UDP `connect` sends no packet).
    Order: global (public) addresses, then Tailscale's 100.64.0.0/10, then
    other private ones.
    """
    found: list[str] = []
    names = {socket.gethostname(), socket.getfqdn()}
    for family in families:
        for name in names:
            try:
                infos = socket.getaddrinfo(name, None, family, socket.SOCK_STREAM)
            except OSError:
                infos = []
            found += [info[4][0] for info in infos]
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.connect((_PROBES[family], 9))
                found.append(probe.getsockname()[0])
        except OSError:
            pass
    usable = []
    for text in dict.fromkeys(found):
        address = ipaddress.ip_address(text.split("%")[0])
        if not (address.is_loopback or address.is_link_local or address.is_unspecified):
            usable.append(address)
    tailscale = ipaddress.ip_network("100.64.0.0/10")

    def rank(address) -> tuple[int, int]:
        kind = 0 if address.is_global else 1 if address in tailscale else 2
        return kind, address.version  # IPv4 first: more networks route it
    return [str(a) for a in sorted(usable, key=rank)]


def _public_host(host: str) -> str:
    """The host to put in the URL when listening on `host`: a reachable one for 0.0.0.0/::."""
    if host not in ("0.0.0.0", "::"):
        return host
    families = (socket.AF_INET,) if host == "0.0.0.0" else (socket.AF_INET, socket.AF_INET6)
    addresses = local_addresses(families)
    if not addresses:
        name = socket.getfqdn()
        log.warning("listening on every interface, but this machine has no address other than "
                    "loopback; the URL names %s", name)
        return name
    log.info("listening on every interface; the URL uses %s%s", addresses[0],
             f" (others: {', '.join(addresses[1:])})" if addresses[1:] else "")
    if not any(ipaddress.ip_address(a).is_global for a in addresses):
        log.warning("all of this machine's addresses are private (a LAN, a VPN): a remote GPU "
                    "such as Colab cannot reach them directly. Forward a port of your router "
                    "to %s, use Tailscale on both sides, or use --tunnel ngrok", addresses[0])
    return addresses[0]


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Daemon:
    """Serves the datasets under `config.paths` until stopped.

    >>> daemon = Daemon(DaemonConfig([Path("data")]))  # doctest: +SKIP
    >>> url = daemon.start(); daemon.wait()            # doctest: +SKIP
    """

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        if config.insecure and config.tunnel:
            raise ValueError("insecure with a tunnel would put the token and the data in plain "
                             "text on the internet; refused")
        tune_allocator()
        state_dir = config.state_dir or default_state_dir()
        if not state_dir.exists():  # a folder given that exists keeps its mode
            state_dir.mkdir(parents=True, mode=0o700)
            os.chmod(state_dir, 0o700)
        awaited = [Path(path) for _, path in config.preparation.awaited]  # (their own daemon)
        folder = identity_dir(state_dir, [*config.paths, *awaited], config.host)
        self._lock = IdentityLock(folder)  # OSError when another daemon holds it
        self.identity = Identity.load(folder)
        if config.new_token:
            self.identity.token = new_token()
            self.identity.save()
        if config.token:
            check_token(config.token)
        self.token = config.token or self.identity.token
        self.catalog = Catalog([p if is_database_url(str(p)) else Path(p) for p in config.paths],
                               state_dir / "cache", config.follow_symlinks,
                               config.images_column, config.preparation)
        self.results = ResultsSink(config.results_dir or state_dir / "results", config.max_upload)
        workers = config.encode_workers or max(2, os.cpu_count() or 1)
        self.encode_pool = ThreadPoolExecutor(workers, thread_name_prefix="tether-encode")
        self.stats = Stats()
        servicer = Servicer(self.catalog, self.encode_pool, workers, self.stats, self.results,
                            MemoryBudget(config.max_memory), config.stall_seconds,
                            SharedFiles(self.results.root, dict(config.shares), state_dir))
        open_files = raise_open_files_limit()
        self.max_connections = connection_cap(open_files)
        log.info("open files limit %d: at most %d connections at once, each given %d s to "
                 "finish its handshakes", open_files, self.max_connections,
                 rpc.HANDSHAKE_TIMEOUT_MS // 1000)
        self.server = grpc.server(
            ThreadPoolExecutor(MAX_STREAMS + 8, thread_name_prefix="tether-rpc"),
            handlers=[handler(servicer)],
            interceptors=[TokenAuth(self.token)],
            options=[*rpc.SERVER_OPTIONS,
                     ("grpc.max_allowed_incoming_connections", self.max_connections)],
            maximum_concurrent_rpcs=MAX_STREAMS,
        )
        self.endpoint: Endpoint | None = None
        self.tunnel: Tunnel | None = None

    def _bind(self, host: str, port: int, secure: bool) -> int:
        """The port bound, or 0 when it is taken."""
        try:
            if secure:
                credentials = grpc.ssl_server_credentials([self.identity.tls()])
                return self.server.add_secure_port(_address(host, port), credentials)
            return self.server.add_insecure_port(_address(host, port))
        except RuntimeError:  # newer grpcio raises where older returned 0
            return 0

    def start(self) -> str:
        """Bind, start serving, and return the connect URL (the tunnel's, with one).

        With port 0 the daemon takes the port it had last time with these
        paths and host, when it is free, so that its URL survives restarts.
        """
        host, wanted, secure = self.config.host, self.config.port, not self.config.insecure
        port = 0
        if wanted == 0 and self.identity.port:
            port = self._bind(host, self.identity.port, secure)
            if port == 0:
                log.warning("port %d of the previous run is taken; the URL changes",
                            self.identity.port)
        if port == 0:
            port = self._bind(host, wanted, secure)
        if port == 0:
            raise OSError(f"cannot listen on {host}:{wanted}: address in use or not available")
        # ngrok's HTTPS edge speaks plain HTTP/2 to a port only this machine can reach.
        edge_port = self._bind("127.0.0.1", 0, False) if self.config.tunnel == "ngrok-https" \
            else port
        self.identity.port = port
        self.identity.save()
        self.server.start()
        preload()  # before the first stream needs them
        public = _public_host(host)
        fp = fingerprint(self.identity.tls()[1]) if secure else None
        self.endpoint = Endpoint(public, port, self.token, fp,
                                 "pinned" if secure else "off")
        log.info("listening on %s port %d (%s), serving %s", host, port,
                 "TLS, token" if secure else "PLAIN, token", ", ".join(self.catalog.names))
        if self.config.tunnel:
            try:
                self.tunnel = open_tunnel(self.config.tunnel, edge_port, self.endpoint,
                                          lambda: self.stats.bytes_sent, self.config.tunnel_cap)
            except OSError:
                self.stop(grace=0)
                raise
            return self.tunnel.endpoint.url()
        return self.endpoint.url()

    def wait(self, timeout: float | None = None) -> bool:
        return self.server.wait_for_termination(timeout)

    def stop(self, grace: float = 2.0) -> None:
        if self.tunnel is not None:
            self.tunnel.close()
        self.server.stop(grace).wait()
        stop_transform_workers()
        stop_query_processes()
        self.encode_pool.shutdown(wait=False, cancel_futures=True)
        self._lock.release()
