"""Start-up: the pinned certificate is fetched once a process, and the pin still holds.

A counting TCP forwarder stands in front of the daemon: every connection a
loader or client makes (the certificate fetch, gRPC's channel) is one it
accepts. The forwarder can be pointed at another daemon mid-test, as a man
in the middle at the same address would be.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

import tether

from ..conftest import make_features


class CountingForwarder:
    """Forwards each TCP connection to `target` (changeable); counts the connections."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.connections = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:  # closed
                return
            with self._lock:
                self.connections += 1
                try:
                    server = socket.create_connection(self.target)
                except OSError:
                    client.close()
                    continue
                self._open += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(1 << 16):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with contextlib.suppress(OSError):  # wakes the accepting thread, which close() does not
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        with self._lock:
            for sock in self._open:
                sock.close()

    def __enter__(self) -> CountingForwarder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _address(url: str) -> tuple[str, int]:
    endpoint = tether.parse_url(url)
    return endpoint.host, endpoint.port


def _through(url: str, port: int, **changes) -> str:
    """`url` (its token and fingerprint) at the forwarder's port, with `changes`."""
    endpoint = tether.parse_url(url).with_address("127.0.0.1", port)
    fields = {"host": endpoint.host, "port": endpoint.port, "token": endpoint.token,
              "fingerprint": endpoint.fingerprint, "tls": endpoint.tls, **changes}
    return tether.Endpoint(**fields).url()


def _ids(url: str) -> np.ndarray:
    with tether.Loader(url, dataset="train", batch_size=64) as loader:
        return np.concatenate([batch["id"] for batch in loader])


def test_a_second_loader_does_not_fetch_the_certificate_again(serve, npy_dataset) -> None:
    daemon = serve(npy_dataset(300))
    with CountingForwarder(_address(daemon.url)) as forwarder:
        url = _through(daemon.url, forwarder.port)
        assert np.array_equal(_ids(url), np.arange(300))
        first = forwarder.connections
        assert first >= 2  # the certificate's connection, then gRPC's
        assert np.array_equal(_ids(url), np.arange(300))
        second = forwarder.connections - first
        assert second == first - 1  # the same, less the certificate's
        with tether.connect(url) as client:  # a client of the same daemon: gRPC's alone
            assert [d.name for d in client.datasets()] == ["train"]
        assert forwarder.connections == first + second + 1


def test_a_wrong_fingerprint_is_refused_after_the_right_one_was_kept(serve,
                                                                      npy_dataset) -> None:
    daemon = serve(npy_dataset(100))
    with CountingForwarder(_address(daemon.url)) as forwarder:
        url = _through(daemon.url, forwarder.port)
        assert np.array_equal(_ids(url), np.arange(100))
        forged = _through(daemon.url, forwarder.port, fingerprint="0" * 64)
        with pytest.raises(tether.SecurityError, match="presents certificate .*not the"):
            tether.Loader(forged, dataset="train", batch_size=10)
        with pytest.raises(tether.SecurityError):
            tether.connect(forged)
    with daemon.client() as client:
        assert client.status().streams_total == 1  # the right URL's stream only


def test_another_daemon_at_a_kept_address_is_refused(serve, npy_dataset,
                                                     tmp_path: Path) -> None:
    daemon = serve(npy_dataset(100))
    other_data = tmp_path / "other" / "train"  # the same dataset name, another certificate
    other_data.mkdir(parents=True)
    for column, values in make_features(100, seed=1).items():
        np.save(other_data / f"{column}.npy", values)
    other = serve(other_data)
    with CountingForwarder(_address(daemon.url)) as forwarder:
        url = _through(daemon.url, forwarder.port)
        assert np.array_equal(_ids(url), np.arange(100))  # its certificate is kept now
        forwarder.target = _address(other.url)  # a man in the middle, the same address
        # The kept certificate is gRPC's only root, so the handshake fails; the
        # loader's reconnect then fetches anew and names the mismatch.
        retry = tether.RetryPolicy(timeout=5, connect_timeout=5)
        with pytest.raises(tether.SecurityError, match="presents certificate"):
            iter(tether.Loader(url, dataset="train", batch_size=10, retry=retry))
        with pytest.raises(tether.TetherError), tether.connect(url, timeout=5) as client:
            client.datasets()
    with other.client() as client:
        assert client.status().streams_total == 0  # it served nothing


def test_a_loader_connects_over_a_100_ms_round_trip(serve, npy_dataset) -> None:
    from tether.bench.link import Link, ShapedProxy

    daemon = serve(npy_dataset(100))
    with ShapedProxy(_address(daemon.url), Link("slow", None, 0.05)) as link:
        url = _through(daemon.url, link.port)
        retry = tether.RetryPolicy(timeout=3, connect_timeout=3)
        with tether.Loader(url, dataset="train", batch_size=64, retry=retry) as loader:
            assert np.array_equal(np.concatenate([b["id"] for b in loader]), np.arange(100))
