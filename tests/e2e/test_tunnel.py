"""--tunnel ngrok, against a stand-in for pyngrok's boundary (ngrok is unreachable here).

The stand-in replaces `pyngrok.ngrok.connect`/`disconnect` only. For TCP it
really forwards (through the bench's proxy), so the URL the daemon prints is
used end to end, TLS pinned through the "tunnel".
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import tether
from tether.bench.link import Link, ShapedProxy
from tether.daemon import Daemon, DaemonConfig
from tether.daemon.serve.tunnel import CAP_MARKS, DEFAULT_CAP, POLL_SECONDS, human_bytes

from ..conftest import collect, wait_until


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
    pytest.importorskip("pyngrok")  # a daemon-side package: absent on Colab's stack (.ci/run)
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


def _cap_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "tunnel has carried" in r.getMessage()]


def test_the_tunnel_cap_warns_once_at_half_and_once_at_90_percent(
        tmp_path: Path, npy_dataset, fake_ngrok, caplog) -> None:
    cap = 1_000_000  # --tunnel-cap 1MB; an epoch of 3000 rows is about a quarter of it
    daemon = Daemon(DaemonConfig([npy_dataset(3000)], state_dir=tmp_path / "state",
                                 tunnel="ngrok", tunnel_cap=cap))
    caplog.set_level(logging.WARNING, logger="tether.daemon.serve.tunnel")
    url = daemon.start()
    meter = daemon.tunnel.meter

    def stream(epochs: int) -> float:
        collect(tether.Loader(url, dataset="train", batch_size=500, num_epochs=epochs))
        carried = daemon.stats.bytes_sent / cap
        expected = [words for fraction, words in CAP_MARKS if carried >= fraction]
        wait_until(lambda: meter.warned == expected, f"the cap warnings {expected}", timeout=10)
        time.sleep(POLL_SECONDS * 1.5)  # and nothing more comes
        assert meter.warned == expected, (carried, meter.warned)
        return carried

    try:
        assert stream(1) < 0.5 and _cap_warnings(caplog) == []
        assert 0.5 <= stream(2) < 0.9
        half, = _cap_warnings(caplog)
        assert half.startswith("the ngrok tunnel has carried ")
        assert "half of the 1 MB cap (--tunnel-cap); ngrok's free plan moves about 1 GB a month" \
            in half
        assert stream(2) >= 0.9
        assert stream(1) >= 1.0  # past the cap: no warning again
    finally:
        daemon.stop()
    half, ninety = _cap_warnings(caplog)
    assert "90% of the 1 MB cap (--tunnel-cap)" in ninety and "use a direct address" in ninety


def test_no_cap_warning_below_half_even_when_the_tunnel_closes(tmp_path: Path, npy_dataset,
                                                              fake_ngrok, caplog) -> None:
    daemon = Daemon(DaemonConfig([npy_dataset(300)], state_dir=tmp_path / "state",
                                 tunnel="ngrok", tunnel_cap=DEFAULT_CAP))
    caplog.set_level(logging.WARNING, logger="tether.daemon.serve.tunnel")
    url = daemon.start()
    try:
        collect(tether.Loader(url, dataset="train", batch_size=100))
    finally:
        daemon.stop()
    assert daemon.stats.bytes_sent > 0 and _cap_warnings(caplog) == []


def test_human_sizes_in_the_cap_warnings() -> None:
    assert human_bytes(512_000_000) == "512 MB" and human_bytes(DEFAULT_CAP) == "1 GB"
    assert human_bytes(1_500_000_000) == "1.5 GB" and human_bytes(999) == "999 bytes"


def test_tunnel_cap_flag(tmp_path: Path, npy_dataset) -> None:
    pytest.importorskip("cryptography")  # the daemon starts here: absent on Colab's stack
    for cap, problem in (("0", "--tunnel-cap must be more than 0 bytes"),
                         ("lots", "not a size: 'lots'")):
        result = subprocess.run(
            [sys.executable, "-m", "tether", "serve", str(npy_dataset(10, name=f"d{cap}")),
             "--state-dir", str(tmp_path / "state"), "--tunnel", "ngrok", "--tunnel-cap", cap],
            capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and problem in result.stderr, result.stderr
