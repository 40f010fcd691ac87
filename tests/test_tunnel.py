"""--tunnel ngrok, against a stand-in for pyngrok's boundary (ngrok is unreachable here).

The stand-in replaces `pyngrok.ngrok.connect`/`disconnect` only. For TCP it
really forwards (through the bench's proxy), so the URL the daemon prints is
used end to end, TLS pinned through the "tunnel".
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import tether
from tether.bench.link import Link, ShapedProxy
from tether.daemon import Daemon, DaemonConfig

from .conftest import collect


class FakeNgrok:
    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.proxies: list[ShapedProxy] = []
        self.disconnected: list[str] = []

    def connect(self, addr: str, proto: str, **options):
        self.calls.append((addr, proto, options))
        if proto == "tcp":
            proxy = ShapedProxy(("127.0.0.1", int(addr)), Link("tunnel", None))
            self.proxies.append(proxy)
            return SimpleNamespace(public_url=f"tcp://127.0.0.1:{proxy.port}")
        return SimpleNamespace(public_url="https://abc123.ngrok-free.app")

    def disconnect(self, public_url: str) -> None:
        self.disconnected.append(public_url)
        for proxy in self.proxies:
            proxy.close()


@pytest.fixture
def fake_ngrok(monkeypatch):
    from pyngrok import ngrok

    fake = FakeNgrok()
    monkeypatch.setattr(ngrok, "connect", fake.connect)
    monkeypatch.setattr(ngrok, "disconnect", fake.disconnect)
    return fake


def test_tcp_tunnel_prints_the_public_url_and_works_end_to_end(tmp_path: Path, npy_dataset,
                                                              fake_ngrok) -> None:
    daemon = Daemon(DaemonConfig([npy_dataset(300)], state_dir=tmp_path / "state",
                                 tunnel="ngrok"))
    url = daemon.start()
    try:
        endpoint = tether.parse_url(url)
        (addr, proto, _), = fake_ngrok.calls
        assert (proto, int(addr)) == ("tcp", daemon.endpoint.port)
        assert endpoint.port != daemon.endpoint.port  # the tunnel's, not the local one
        assert endpoint.fingerprint == daemon.endpoint.fingerprint  # TLS pinned end to end
        assert endpoint.token == daemon.endpoint.token
        got = collect(tether.Loader(url, dataset="train", batch_size=64))[1]
        assert np.array_equal(got["id"], np.arange(300))
    finally:
        daemon.stop()
    assert fake_ngrok.disconnected == [f"tcp://127.0.0.1:{endpoint.port}"]


def test_https_tunnel_points_ngrok_at_a_loopback_http2_port(tmp_path: Path, npy_dataset,
                                                           fake_ngrok) -> None:
    daemon = Daemon(DaemonConfig([npy_dataset(50)], state_dir=tmp_path / "state",
                                 tunnel="ngrok-https"))
    url = daemon.start()
    try:
        (addr, proto, options), = fake_ngrok.calls
        assert proto == "http" and options == {"schemes": ["https"], "app_protocol": "http2"}
        assert url.startswith("tether://abc123.ngrok-free.app:443/?tls=system&token=")
        assert "tls=system" in url and "fp=" not in url  # ngrok's edge certificate
        edge = int(addr)
        assert edge != daemon.endpoint.port
        # What ngrok's agent sees there: plain HTTP/2, and the token still required.
        token = tether.parse_url(url).token
        local = tether.Endpoint("127.0.0.1", edge, token, tls="off")
        assert collect(tether.Loader(local, dataset="train", batch_size=10))[1]["id"].size == 50
        with pytest.raises(tether.AuthError):
            tether.connect(tether.Endpoint("127.0.0.1", edge, "wrong", tls="off")).datasets()
    finally:
        daemon.stop()
