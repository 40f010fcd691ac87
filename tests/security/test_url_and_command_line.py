"""Issue 9, the URL and the command line: no silent downgrade to plain text, clear refusals."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

import pytest

import tether
from tether.wire.url import Endpoint, parse_url

from ..conftest import DaemonProcess, collect


class Listener:
    """A plain TCP listener on loopback that counts connections and bytes received."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.received = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.settimeout(0.5)
            try:
                while chunk := conn.recv(65536):
                    self.received += chunk
            except OSError:
                pass
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


TOKEN = "S3cretT0kenS3cretT0kenS3cretT0ken"
FP = "ab" * 32


def _downgrades(port: int) -> list[str]:
    base = f"tether://127.0.0.1:{port}/"
    return [
        f"{base}?token={TOKEN}",                 # a shell cut the URL at `&`
        f"{base}?token={TOKEN}&fp=",             # fp= empty
        f"{base}?token={TOKEN}&FP=",             # upper case, empty
        f"{base}?token={TOKEN}#fp={FP}",         # fp in the fragment
        f"127.0.0.1:{port}",                     # bare host:port
        f"{base}?token={TOKEN}&fp=xyz",          # not a fingerprint
        f"{base}?token={TOKEN}&tls=",            # tls empty
    ]


@pytest.mark.parametrize("case", range(7))
def test_a_url_without_fingerprint_sends_nothing(listener, case) -> None:
    url = _downgrades(listener.port)[case]
    with pytest.raises(tether.RequestError, match="quote"):
        tether.connect(url, timeout=2).datasets()
    with pytest.raises(tether.RequestError, match="quote"):
        tether.Loader(url, dataset="train", batch_size=10)
    result = subprocess.run([sys.executable, "-m", "tether", "ls", url], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0 and "quote" in result.stderr
    assert TOKEN not in result.stderr
    assert listener.connections == 0 and listener.received == b""


def test_upper_case_fp_is_the_same_as_fp() -> None:
    assert parse_url(f"tether://h:1/?FP={FP.upper()}&token=t").fingerprint == FP


def test_plain_text_only_when_the_url_says_tls_off(listener) -> None:
    url = f"tether://127.0.0.1:{listener.port}/?token={TOKEN}&tls=off"
    assert parse_url(url).tls == "off"
    with pytest.raises(tether.RequestError):
        parse_url(f"tether://h:1/?fp={FP}&tls=off")  # contradictory
    assert parse_url("tether://h.example:443/?token=t&tls=system").tls == "system"
    with pytest.raises(tether.RequestError):
        Endpoint("h", 1, "t")  # an Endpoint too needs fp= or an explicit tls


def test_url_prints_fp_before_token_and_tls_off_explicitly() -> None:
    url = Endpoint("h", 7000, TOKEN, FP).url()
    assert url.index("fp=") < url.index("token=")
    assert parse_url(url) == Endpoint("h", 7000, TOKEN, FP, "pinned")
    plain = Endpoint("h", 7000, TOKEN, tls="off").url()
    assert "tls=off" in plain and parse_url(plain).tls == "off"
    # cut at the first `&`, a pinned URL keeps its fingerprint and loses the token
    assert parse_url(url.split("&")[0]).fingerprint == FP


def test_insecure_daemon_prints_tls_off(tmp_path, npy_dataset) -> None:
    with DaemonProcess([npy_dataset(20)], tmp_path / "state", "--insecure") as daemon:
        assert "tls=off" in daemon.url
        assert collect(tether.Loader(daemon.url, dataset="train", batch_size=5))[1]["id"].size == 20


STRONG = "q7Xv-2LmN_9pRt4sWz8kYb3HcJf6"  # 28 characters of 64: 168 bits


def test_a_token_on_the_command_line_is_refused(tmp_path, npy_dataset) -> None:
    with pytest.raises(RuntimeError, match="TETHER_TOKEN.*--token-file"):
        DaemonProcess([npy_dataset(10)], tmp_path / "state", "--token", STRONG).close()


def test_the_token_comes_from_the_environment_or_a_file_and_is_not_kept(
        tmp_path, npy_dataset, monkeypatch) -> None:
    data, state = npy_dataset(10), tmp_path / "state"
    with DaemonProcess([data], state) as plain:
        kept = parse_url(plain.url).token
    monkeypatch.setenv("TETHER_TOKEN", STRONG)
    with DaemonProcess([data], state) as daemon:
        assert parse_url(daemon.url).token == STRONG
        assert daemon.client().datasets()[0].name == "train"
    monkeypatch.delenv("TETHER_TOKEN")
    secret = tmp_path / "token"
    secret.write_text(STRONG[::-1] + "\n")
    secret.chmod(0o600)
    with DaemonProcess([data], state, "--token-file", str(secret)) as daemon:
        assert parse_url(daemon.url).token == STRONG[::-1]
    for saved in (state / "daemons").glob("*/identity.json"):
        assert STRONG not in saved.read_text() and STRONG[::-1] not in saved.read_text()
    with DaemonProcess([data], state) as again:  # the kept token is back
        assert parse_url(again.url).token == kept
    with DaemonProcess([data], state, "--new-token") as rotated:
        assert parse_url(rotated.url).token not in (kept, STRONG)


@pytest.mark.parametrize("token", ["hunter2", "a" * 40, "abcdefghij0123456789", "tok en" * 8])
def test_weak_tokens_are_refused(tmp_path, npy_dataset, monkeypatch, token) -> None:
    monkeypatch.setenv("TETHER_TOKEN", token)
    with pytest.raises(RuntimeError, match="128 bits|spaces"):
        DaemonProcess([npy_dataset(10)], tmp_path / "state").close()


def test_a_token_file_others_can_read_is_refused(tmp_path, npy_dataset) -> None:
    secret = tmp_path / "token"
    secret.write_text(STRONG)
    secret.chmod(0o644)
    with pytest.raises(RuntimeError, match="readable by others"):
        DaemonProcess([npy_dataset(10)], tmp_path / "state", "--token-file", str(secret)).close()


def _serve(tmp_path, data, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tether", "serve", str(data), "--port", "0",
                           "--state-dir", str(tmp_path / "state"), *args],
                          capture_output=True, text=True, timeout=120)


def test_insecure_with_a_tunnel_is_refused(tmp_path, npy_dataset) -> None:
    result = _serve(tmp_path, npy_dataset(10), "--insecure", "--tunnel", "ngrok")
    assert result.returncode == 2 and result.stdout == ""  # no URL
    assert "--insecure" in result.stderr and "--tunnel" in result.stderr
    assert "this machine only" not in result.stderr
    assert "Traceback" not in result.stderr


def test_insecure_warning_is_true(tmp_path, npy_dataset) -> None:
    with DaemonProcess([npy_dataset(10)], tmp_path / "state", "--insecure") as daemon:
        daemon.stop()
        text = daemon.stderr_text()
    assert "--insecure" in text and "this machine only" not in text
    assert "any user or program on this machine" in text


def test_a_tunnel_without_network_is_one_clear_line(tmp_path, npy_dataset) -> None:
    pytest.importorskip("cryptography")  # a daemon-side package: absent on Colab's stack (.ci/run)
    pytest.importorskip("pyngrok")
    # No network here: pyngrok cannot download its agent or reach ngrok.
    result = _serve(tmp_path, npy_dataset(10), "--tunnel", "ngrok")
    assert result.returncode == 2 and result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "tether serve:" in line]
    assert len(lines) == 1 and "ngrok" in lines[0]
    assert result.stderr.count("free plan") == 1


def test_serve_on_a_basic_install_says_what_to_install(tmp_path) -> None:
    # A base install lacks the daemon's dependencies: importing tether.daemon.cli fails.
    code = ("import sys; sys.modules['tether.daemon.cli'] = None; from tether.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    for argv in (["serve", str(tmp_path), "--host", "0.0.0.0"], ["results"], ["serve"]):
        result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 2, result.stderr
        assert "tether[daemon]" in result.stderr
        assert "unrecognized arguments" not in result.stderr


def test_a_negative_seed_is_a_request_error() -> None:
    with pytest.raises(tether.RequestError, match="seed"):
        tether.Loader(f"tether://127.0.0.1:1/?fp={FP}", dataset="d", batch_size=1, seed=-1)
