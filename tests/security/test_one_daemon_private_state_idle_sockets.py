"""Issue 9, the daemon's side: one daemon per identity, private state, many idle sockets."""

from __future__ import annotations

import ipaddress
import json
import re
import resource
import socket
import stat
from pathlib import Path

import pytest

import tether

from ..conftest import DaemonProcess


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_second_daemon_on_the_same_paths_is_refused(tmp_path, npy_dataset) -> None:
    data, state = npy_dataset(10), tmp_path / "state"
    with DaemonProcess([data], state) as first:
        saved = next((state / "daemons").glob("*/identity.json"))
        before = json.loads(saved.read_text())
        with pytest.raises(RuntimeError, match="already serving") as refused:
            DaemonProcess([data], state).close()
        assert str(first.proc.pid) in str(refused.value)
        assert json.loads(saved.read_text()) == before  # the port is still the first's
        assert first.client().datasets()[0].name == "train"
    # once the first has stopped, the lock is free again, and the URL is the same
    with DaemonProcess([data], state) as again:
        assert again.url == first.url


def test_state_and_identity_are_private(tmp_path, npy_dataset) -> None:
    state = tmp_path / "state"
    with DaemonProcess([npy_dataset(10)], state):
        folder = next((state / "daemons").glob("*"))
        assert _mode(state) == 0o700
        assert _mode(state / "daemons") == 0o700
        assert _mode(folder) == 0o700
        files = list(folder.iterdir())
        assert {f.name for f in files} >= {"identity.json", "key.pem", "cert.pem", "lock"}
        for f in files:
            assert _mode(f) == 0o600, f
    tether  # noqa: B018 (the loader is imported for the fixtures' sake)


def test_every_interface_prints_a_reachable_address(tmp_path, npy_dataset) -> None:
    with DaemonProcess([npy_dataset(10)], tmp_path / "state", "--host", "0.0.0.0") as daemon:
        host = tether.parse_url(daemon.url).host
        assert host != "localhost"
        address = ipaddress.ip_address(host)  # an address, not a name only this machine knows
        assert not address.is_loopback and not address.is_link_local
        assert daemon.client().datasets()[0].name == "train"  # and it answers there
        text = daemon.stderr_text()
        assert "listening on every interface" in text
        if address.is_private:
            assert "private" in text and "--tunnel ngrok" in text


def _soft_open_files(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open files line")


@pytest.mark.skipif(not Path("/proc/self/limits").exists(), reason="reads /proc")
def test_idle_connections_do_not_lock_out_a_real_client(tmp_path, npy_dataset) -> None:
    """Slowloris: 1,100 idle TCP connections against a daemon started with ulimit -n 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"the hard file limit here is {hard}: cannot show the raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # the daemon inherits it
    try:
        daemon = DaemonProcess([npy_dataset(10)], tmp_path / "state")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    idle: list[socket.socket] = []
    try:
        assert _soft_open_files(daemon.proc.pid) > 1024  # raised at start
        port = tether.parse_url(daemon.url).port
        if soft < 1300:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
        for _ in range(1100):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        served = None
        for _attempt in range(10):  # a loader retries like this
            try:
                with tether.connect(daemon.url, timeout=10) as client:
                    served = client.datasets()
                break
            except tether.ConnectionFailed:
                continue
        assert served and served[0].name == "train"
    finally:
        for sock in idle:
            sock.close()
        daemon.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("level", ["info", "warning"])
def test_grpc_core_lines_go_through_our_logging(tmp_path, npy_dataset, level) -> None:
    with DaemonProcess([npy_dataset(10)], tmp_path / "state", "--log-level", level) as daemon:
        endpoint = tether.parse_url(daemon.url)
        plain = tether.Endpoint(endpoint.host, endpoint.port, endpoint.token, tls="off")
        with pytest.raises(tether.ConnectionFailed):  # C-core logs the failed TLS handshake
            tether.connect(plain, timeout=3).datasets()
        daemon.stop()
        lines = daemon.stderr_text().splitlines()
    assert not [line for line in lines if re.match(r"[DIWEF]\d{4} ", line)]  # no raw lines
    core = [line for line in lines if "grpc.core:" in line]
    if level == "info":
        assert any("INFO grpc.core: ssl_transport_security" in line for line in core)
    else:
        assert not [line for line in core if " INFO " in line or " DEBUG " in line]
