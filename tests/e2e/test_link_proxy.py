"""The bench's link proxy: forwards bytes intact, and cuts connections when told."""

from __future__ import annotations

import contextlib
import os
import socket
import threading

import pytest

from tether.bench.link import Link, ShapedProxy, custom_link, parse_rate, parse_seconds

PAYLOAD = os.urandom(3 << 20)


@pytest.fixture
def echo_server():
    """Sends PAYLOAD to every connection, then closes it."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(16)
                with contextlib.suppress(OSError):  # the cut test resets it midway
                    conn.sendall(PAYLOAD)

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()
    server.close()


def _fetch(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"go")
        received = bytearray()
        while data := conn.recv(1 << 20):
            received += data
        return bytes(received)


@pytest.mark.parametrize("link", [Link("shaped", 400e6, 0.002), Link("delay only", None, 0.005)])
def test_proxy_forwards_every_byte_in_order(echo_server, link: Link) -> None:
    with ShapedProxy(echo_server, link) as proxy:
        assert _fetch(proxy.port) == PAYLOAD


def test_proxy_cuts_connections_within_the_range(echo_server) -> None:
    proxy = ShapedProxy(echo_server, Link("cutting", None, 0.0), cut_range=(100_000, 200_000))
    try:
        with pytest.raises(ConnectionResetError):
            _fetch(proxy.port)
    finally:
        log = proxy.close()
    assert "cut after" in log


def test_link_presets_parse() -> None:
    assert parse_rate("80Mbit") == 80e6
    assert parse_rate("1gbit") == 1e9
    assert parse_seconds("40ms") == 0.04
    link = custom_link("80Mbit", "40ms")
    assert (link.rate, link.delay) == (80e6, 0.02)
