"""Through an HTTP CONNECT proxy (Tailscale's userspace networking on Colab), a real one.

The proxy below parses `CONNECT host:port`, answers 200 and pipes bytes both
ways, counting them, so each test can tell the traffic went through it. TLS
runs end to end through the tunnel, pinned by the URL's fingerprint; a proxy
that ends TLS itself is refused. grpcio does not exempt loopback targets from
a proxy (1.66 and 1.85 checked), so the daemon on 127.0.0.1 is reached
through it.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from pathlib import Path

import numpy as np
import pytest

import tether
from tether.wire.proxy import ENV_VARS, parse_proxy, proxy_for

from ..conftest import collect


class ConnectProxy:
    """A threaded CONNECT proxy: `forward` (a tunnel), `refuse` (403), or `mitm`.

    `mitm` answers 200, then ends the client's TLS with its own self-signed
    certificate, as an intercepting corporate proxy would.
    """

    def __init__(self, mode: str = "forward", cert_dir: Path | None = None) -> None:
        self.mode = mode
        self.requests: list[str] = []
        self.bytes_to_client = 0
        self.bytes_to_server = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        if mode == "mitm":
            from tether.daemon.serve.identity import _self_signed

            key, cert = _self_signed()
            assert cert_dir is not None
            (cert_dir / "mitm.key").write_bytes(key)
            (cert_dir / "mitm.pem").write_bytes(cert)
            self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls.load_cert_chain(cert_dir / "mitm.pem", cert_dir / "mitm.key")
            self._tls.set_alpn_protocols(["h2"])
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self._sockets.append(client)
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            data = client.recv(4096)
            if not data:
                return
            head += data
        line = head.split(b"\r\n", 1)[0].decode()
        with self._lock:
            self.requests.append(line)
        method, target, _ = line.split()
        if method != "CONNECT" or self.mode == "refuse":
            client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            client.close()
            return
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        if self.mode == "mitm":
            # The loader hangs up on seeing the certificate.
            with contextlib.suppress(OSError), \
                    self._tls.wrap_socket(client, server_side=True) as tls:
                tls.recv(1)
            return
        host, port = target.rsplit(":", 1)
        upstream = socket.create_connection((host.strip("[]"), int(port)))
        self._sockets.append(upstream)
        threading.Thread(target=self._pipe, args=(upstream, client, "bytes_to_client"),
                         daemon=True).start()
        self._pipe(client, upstream, "bytes_to_server")

    def _pipe(self, source: socket.socket, sink: socket.socket, counter: str) -> None:
        try:
            while data := source.recv(1 << 16):
                with self._lock:
                    setattr(self, counter, getattr(self, counter) + len(data))
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._server.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> ConnectProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture(autouse=True)
def no_proxy_env(monkeypatch):
    """Each test decides its proxy; none leaks in from the machine running the tests."""
    for name in (*ENV_VARS, "no_proxy", "no_grpc_proxy"):
        monkeypatch.delenv(name, raising=False)


ROWS = 3000  # about 500 KB of columns: a stream worth counting


def test_loader_streams_exactly_through_the_proxy(serve, npy_dataset) -> None:
    daemon = serve(npy_dataset(ROWS))
    with ConnectProxy() as proxy:
        loader = tether.Loader(daemon.url, dataset="train", batch_size=128, proxy=proxy.url)
        got = collect(loader)[1]
        assert np.array_equal(got["id"], np.arange(ROWS))
        target = tether.parse_url(daemon.url).target
        # The certificate fetch and gRPC's channel both went through the tunnel.
        assert proxy.requests and all(r == f"CONNECT {target} HTTP/1.1" for r in proxy.requests)
        assert len(proxy.requests) >= 2
        # At least the random columns' bytes, which no codec shrinks, came through it.
        assert proxy.bytes_to_client > got["image"].nbytes + got["x"].nbytes
        with tether.connect(daemon.url, proxy=proxy.url) as client:
            assert [d.name for d in client.datasets()] == ["train"]


def test_https_proxy_from_the_environment(serve, npy_dataset, monkeypatch) -> None:
    # grpcio reads the environment at each channel's creation (1.66 and 1.85
    # checked), so setting it in this process is enough.
    daemon = serve(npy_dataset(500))
    with ConnectProxy() as proxy:
        monkeypatch.setenv("https_proxy", proxy.url)
        got = collect(tether.Loader(daemon.url, dataset="train", batch_size=100))[1]
        assert np.array_equal(got["id"], np.arange(500))
        assert len(proxy.requests) >= 2 and proxy.bytes_to_client > got["image"].nbytes
        # no_proxy exempts the daemon: nothing more goes through the proxy.
        monkeypatch.setenv("no_proxy", "127.0.0.0/8")
        seen = len(proxy.requests)
        with tether.connect(daemon.url) as client:
            assert [d.name for d in client.datasets()] == ["train"]
        assert len(proxy.requests) == seen


def test_a_proxy_ending_tls_itself_is_refused_by_the_pin(serve, npy_dataset,
                                                          tmp_path: Path) -> None:
    pytest.importorskip("cryptography")  # a daemon-side package: absent on Colab's stack (.ci/run)
    daemon = serve(npy_dataset(50))
    with ConnectProxy("mitm", tmp_path) as proxy:
        with pytest.raises(tether.SecurityError, match="may be reading the traffic"):
            tether.Loader(daemon.url, dataset="train", batch_size=10, proxy=proxy.url)
        with pytest.raises(tether.SecurityError):
            tether.connect(daemon.url, proxy=proxy.url)
        assert proxy.requests  # it was asked, and its certificate seen before any request


def test_a_proxy_refusing_connect_says_so(serve, npy_dataset) -> None:
    daemon = serve(npy_dataset(50))
    with ConnectProxy("refuse") as proxy, \
            pytest.raises(tether.ConnectionFailed, match="refused to open a tunnel.*403"):
        tether.Loader(daemon.url, dataset="train", batch_size=10, proxy=proxy.url)


def test_an_unreachable_proxy_says_which(serve, npy_dataset) -> None:
    daemon = serve(npy_dataset(50))
    with socket.create_server(("127.0.0.1", 0)) as spare:
        port = spare.getsockname()[1]
    with pytest.raises(tether.ConnectionFailed, match=f"proxy at http://127.0.0.1:{port}"):
        tether.connect(daemon.url, proxy=f"http://127.0.0.1:{port}")


@pytest.mark.parametrize("url", ["socks5://localhost:1055", "https://localhost:1055",
                                 "http://localhost", "http://user:pw@localhost:1055",
                                 "localhost:1055", "http://localhost:1055/path",
                                 "http://localhost:99999"])
def test_proxy_urls_other_than_http_host_port_are_refused(url: str) -> None:
    with pytest.raises(tether.RequestError, match=r"expected http://HOST:PORT"):
        parse_proxy(url)
    with pytest.raises(tether.RequestError, match=r"expected http://HOST:PORT"):
        tether.connect("tether://127.0.0.1:1/?tls=off", proxy=url)


def test_which_proxy_applies(monkeypatch) -> None:
    assert proxy_for("example.com") is None
    monkeypatch.setenv("http_proxy", "http://low:1")
    monkeypatch.setenv("https_proxy", "http://mid:2")
    assert proxy_for("example.com").host == "mid"  # grpcio's order: grpc_, https_, http_
    monkeypatch.setenv("grpc_proxy", "http://high:3")
    assert proxy_for("example.com").host == "high"
    assert proxy_for("example.com", "http://given:4").host == "given"
    monkeypatch.setenv("no_proxy", "ample.com, 10.0.0.0/8")  # suffixes and ranges, as grpcio
    assert proxy_for("example.com", "http://given:4") is None
    assert proxy_for("10.1.2.3") is None and proxy_for("11.0.0.1").host == "high"
    monkeypatch.setenv("grpc_proxy", "socks5://x:1")
    with pytest.raises(tether.RequestError, match="grpc_proxy environment variable"):
        proxy_for("11.0.0.1")
