"""Unit tests need no daemon, no server and no network socket, so that
`pytest tests/unit` runs in seconds: any attempt fails the test at once,
saying where such a test belongs."""

from __future__ import annotations

import socket

import grpc
import pytest

from tether.daemon import spawn

WHERE = "a unit test {} : it belongs in tests/e2e (or tests/security)"


def _refuse(what: str):
    def refuse(*args, **kwargs):
        raise AssertionError(WHERE.format(what))

    return refuse


class _NoNetworkSocket(socket.socket):
    def __init__(self, family: int = -1, *args, **kwargs) -> None:
        if family in (socket.AF_INET, socket.AF_INET6, -1):
            raise AssertionError(WHERE.format("opened a network socket"))
        super().__init__(family, *args, **kwargs)


@pytest.fixture(autouse=True)
def no_daemon_server_or_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spawn, "start_module", _refuse("started a daemon"))
    for name in ("server", "insecure_channel", "secure_channel"):
        monkeypatch.setattr(grpc, name, _refuse(f"called grpc.{name}"))
    monkeypatch.setattr(socket, "socket", _NoNetworkSocket)
