"""Only the holder of the URL gets in; results land inside their folder and nowhere else."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

import tether
from tether.daemon.serve.results import ResultsSink, UploadRefused, safe_relative
from tether.wire import rpc
from tether.wire.v1 import tether_pb2 as pb

from ..conftest import DaemonProcess, collect, wait_until


@pytest.fixture
def secured(tmp_path: Path, npy_dataset) -> DaemonProcess:
    daemon = DaemonProcess([npy_dataset(500)], tmp_path / "state")
    yield daemon
    assert daemon.stop() == 0


def _with(url: str, **changes) -> str:
    endpoint = tether.parse_url(url)
    fields = {"host": endpoint.host, "port": endpoint.port, "token": endpoint.token,
              "fingerprint": endpoint.fingerprint, "tls": endpoint.tls, **changes}
    return tether.Endpoint(**fields).url()


def test_the_default_is_pinned_tls_and_a_token(secured) -> None:
    endpoint = tether.parse_url(secured.url)
    assert endpoint.tls == "pinned" and len(endpoint.fingerprint) == 64
    assert len(endpoint.token) >= 40
    assert collect(tether.Loader(secured.url, dataset="train", batch_size=100))[1]["id"].size == 500
    # and the port really speaks TLS: a plain gRPC client gets nowhere
    plain = _with(secured.url, fingerprint=None, tls="off")
    with pytest.raises(tether.ConnectionFailed):
        tether.connect(plain, timeout=3).datasets()


@pytest.mark.parametrize("token", [None, "", "wrong-token", "Bearer"])
def test_missing_or_wrong_tokens_are_refused(secured, token) -> None:
    url = _with(secured.url, token=token or None)
    with pytest.raises(tether.AuthError, match="missing or wrong token"):
        tether.connect(url).datasets()
    with pytest.raises(tether.AuthError):
        iter(tether.Loader(url, dataset="train", batch_size=10, retry=tether.RetryPolicy(0, 0)))
    with pytest.raises(tether.AuthError):
        tether.connect(url).upload("x.txt", b"data")
    with secured.client() as client:
        assert client.status().shards_sent == 0  # nothing was served to them


def test_a_token_replayed_at_another_daemon_is_refused(secured, tmp_path, npy_dataset) -> None:
    other = DaemonProcess([npy_dataset(10, name="other")], tmp_path / "other-state")
    try:
        stolen = _with(other.url, token=tether.parse_url(secured.url).token)
        with pytest.raises(tether.AuthError):
            tether.connect(stolen).datasets()
    finally:
        assert other.stop() == 0


def test_a_wrong_fingerprint_is_refused_before_any_request(secured) -> None:
    forged = _with(secured.url, fingerprint="0" * 64)
    with pytest.raises(tether.SecurityError, match="presents certificate .*not the"):
        tether.connect(forged)
    with pytest.raises(tether.SecurityError):
        tether.Loader(forged, dataset="train", batch_size=10)
    with secured.client() as client:
        assert client.status().streams_total == 0


def test_identity_survives_a_restart(tmp_path, npy_dataset) -> None:
    data = npy_dataset(10)
    first = DaemonProcess([data], tmp_path / "state")
    url = first.url
    assert first.stop() == 0
    second = DaemonProcess([data], tmp_path / "state")
    try:
        assert second.url == url  # same port, token and certificate
        key = next((tmp_path / "state" / "daemons").glob("*/key.pem"))
        assert key.stat().st_mode & 0o077 == 0  # the private key is the owner's alone
    finally:
        assert second.stop() == 0


def test_the_token_never_reaches_the_log(secured) -> None:
    token = tether.parse_url(secured.url).token
    tether.connect(_with(secured.url, token="nope")).close()
    with pytest.raises(tether.AuthError):
        tether.connect(_with(secured.url, token="nope")).datasets()
    secured.stop()
    assert token not in secured.proc.stderr.read()


def test_insecure_mode_says_so_and_still_wants_the_token(tmp_path, npy_dataset) -> None:
    daemon = DaemonProcess([npy_dataset(10)], tmp_path / "state", "--insecure")
    try:
        endpoint = tether.parse_url(daemon.url)
        assert endpoint.fingerprint is None and endpoint.tls == "off"
        assert tether.connect(daemon.url).datasets()[0].name == "train"
        with pytest.raises(tether.AuthError):
            tether.connect(_with(daemon.url, token=None)).datasets()
    finally:
        assert daemon.stop() == 0
    assert "--insecure: no TLS" in daemon.proc.stderr.read()


def test_uploads_land_intact_and_atomically(secured, tmp_path) -> None:
    results = tmp_path / "state" / "results"
    payload = os.urandom(3 << 20)
    source = tmp_path / "ckpt.bin"
    source.write_bytes(payload)
    with secured.client() as client:
        stored = client.upload("run-1/ckpt.bin", str(source))
        assert (stored.name, stored.size) == ("run-1/ckpt.bin", len(payload))
        client.upload("run-1/metrics.json", b'{"loss": 0.1}')
        client.upload("empty.txt", b"")
    assert (results / "run-1" / "ckpt.bin").read_bytes() == payload
    assert (results / "run-1" / "metrics.json").read_bytes() == b'{"loss": 0.1}'
    assert (results / "empty.txt").read_bytes() == b""
    incoming = results / ".incoming"  # no leftovers: no partial file, no staging folder
    assert [p.name for p in incoming.iterdir()] == ["folders"]
    assert list((incoming / "folders").iterdir()) == []


ESCAPES = ["../escape.txt", "/etc/passwd", "a/../../escape.txt", "a/./b", "a//b", "nul\0byte",
           "back\\slash", "", ".incoming/x", "a/" * 600 + "x", "..", "./x"]


@pytest.mark.parametrize("name", ESCAPES)
def test_every_escaping_name_is_refused_with_nothing_written(secured, tmp_path, name) -> None:
    before = {p for p in tmp_path.rglob("*")}
    with secured.client() as client, pytest.raises(tether.RequestError):
        client.upload(name, b"evil")
    after = {p for p in tmp_path.rglob("*") if "incoming" not in str(p)}
    assert after - before == set()
    assert not (tmp_path.parent / "escape.txt").exists()


def test_links_inside_the_results_folder_are_not_followed(tmp_path) -> None:
    sink = ResultsSink(tmp_path / "results")
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "results" / "link").symlink_to(outside)
    with pytest.raises(UploadRefused, match="link"):
        sink.store("link/file.txt", 4, [b"evil"])
    (tmp_path / "results" / "file-link").symlink_to(outside / "target.txt")
    with pytest.raises(UploadRefused, match="link"):
        sink.store("file-link", 4, [b"evil"])
    assert list(outside.iterdir()) == []


def test_size_cap_and_short_or_long_uploads(tmp_path) -> None:
    sink = ResultsSink(tmp_path / "results", max_bytes=100)
    with pytest.raises(UploadRefused, match="over the daemon's cap"):
        sink.store("big", 101, [b"x" * 101])
    with pytest.raises(UploadRefused, match="ended after 3 of 10"):
        sink.store("short", 10, [b"abc"])
    with pytest.raises(UploadRefused, match="more than its 2 bytes"):
        sink.store("long", 2, [b"abc"])
    with pytest.raises(UploadRefused, match="does not fit"):
        ResultsSink(tmp_path / "r2", max_bytes=1 << 62).store("huge", 1 << 61, [])
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [".incoming"]


def test_safe_relative_keeps_subfolders() -> None:
    assert safe_relative("run-3/epoch 1/metrics.json") == Path("run-3", "epoch 1", "metrics.json")


def test_garbage_and_http1_on_the_socket_leave_the_daemon_serving(secured) -> None:
    endpoint = tether.parse_url(secured.url)
    for junk in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", os.urandom(4096), b"\x16\x03\x01" * 100):
        with socket.create_connection((endpoint.host, endpoint.port), timeout=5) as sock:
            sock.sendall(junk)
            with contextlib.suppress(OSError):  # the daemon may just hang up
                sock.recv(1024)
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    with socket.create_connection((endpoint.host, endpoint.port), timeout=5) as sock, \
            contextlib.suppress(OSError, ssl.SSLError), context.wrap_socket(sock) as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # HTTP/1 over TLS
        tls.recv(1024)
    assert tether.connect(secured.url).datasets()[0].name == "train"


def _raw_stream(url: str, messages: list[bytes], timeout: float = 10,
                hold: bool = False) -> grpc.StatusCode:
    """How the daemon ends a Stream of these raw messages. With `hold`, the
    client's side stays open after them: the daemon must answer on its own."""
    endpoint = tether.parse_url(url)
    channel = rpc.open_channel(endpoint)
    call = channel.stream_stream(rpc.method_path(rpc.STREAM), request_serializer=None,
                                 response_deserializer=None)

    def requests():
        yield from messages
        if hold:
            time.sleep(timeout + 1)

    try:
        for _ in call(requests(), metadata=rpc.call_metadata(endpoint), timeout=timeout):
            pass
        return grpc.StatusCode.OK
    except grpc.RpcError as exc:
        return exc.code()
    finally:
        channel.close()


def test_malformed_oversized_and_absurd_messages_get_clean_refusals(secured) -> None:
    open_request = pb.StreamRequest(open=pb.OpenStream(dataset="train", batch_size=10,
                                                       num_epochs=3, initial_credits=2**63))
    absurd = pb.StreamRequest(credit=pb.Credit(shards=2**64 - 1)).SerializeToString()
    assert _raw_stream(secured.url, [b"\xff\xfe garbage"]) != grpc.StatusCode.OK
    assert _raw_stream(secured.url, [b"x" * (rpc.MAX_MESSAGE_BYTES + 10)]) \
        == grpc.StatusCode.RESOURCE_EXHAUSTED
    # absurd credits are clamped to the window: the stream still ends exactly
    assert _raw_stream(secured.url, [open_request.SerializeToString(), absurd]) \
        == grpc.StatusCode.OK
    for dataset in ("../../etc/passwd", "/etc/passwd", "train/../train", "\0"):
        with pytest.raises(tether.DatasetNotFound):
            iter(tether.Loader(secured.url, dataset=dataset, batch_size=1))
    got = collect(tether.Loader(secured.url, dataset="train", batch_size=100))[1]
    assert np.array_equal(got["id"], np.arange(500))


def test_a_far_off_start_cursor_is_planned_in_one_step(secured) -> None:
    """A start sequence of 2**62 used to be walked one epoch at a time (2**63 and
    more are refused: tests/security/test_malicious_daemon_and_forged_requests.py)."""
    far = pb.StreamRequest(open=pb.OpenStream(dataset="train", batch_size=10, num_epochs=1,
                                              initial_credits=4,
                                              resume=pb.Cursor(sequence=2**62)))
    assert _raw_stream(secured.url, [far.SerializeToString()]) == grpc.StatusCode.OK
    assert tether.connect(secured.url).datasets()[0].name == "train"


def test_absurd_parts_of_a_dataset_are_refused(secured) -> None:
    """A request names other daemons' parts: their sizes are the client's word."""
    own = tether.connect(secured.url).describe("train").layout  # the real part, 500 rows
    huge = pb.Layout(chunk_rows=[2**62, 2**62])
    chopped = pb.Layout(chunk_rows=[3, 3], window_rows=2)  # windowed: ours cut in 1-row pieces
    for parts in ([own, huge], [pb.Layout(chunk_rows=[2**40]), own, chopped]):
        opened = pb.StreamRequest(open=pb.OpenStream(
            dataset="train", batch_size=10, initial_credits=4, parts=parts,
            part_index=list(parts).index(own)))
        assert _raw_stream(secured.url, [opened.SerializeToString()]) \
            == grpc.StatusCode.INVALID_ARGUMENT
    got = collect(tether.Loader(secured.url, dataset="train", batch_size=100))[1]
    assert np.array_equal(got["id"], np.arange(500))


def test_a_stream_scanning_for_its_part_ends_when_its_client_leaves(secured) -> None:
    """A part of 500 rows in a claimed dataset of 2**61: finding its first shard
    means scanning for ages. The daemon must still drop the stream (and stop on
    SIGTERM, which the fixture checks) once the client has gone."""
    own = tether.connect(secured.url).describe("train").layout
    opened = pb.StreamRequest(open=pb.OpenStream(
        dataset="train", batch_size=10, initial_credits=4,
        parts=[pb.Layout(chunk_rows=[2**61]), own], part_index=1))
    channel = rpc.open_channel(tether.parse_url(secured.url))
    call = channel.stream_stream(rpc.method_path(rpc.STREAM), request_serializer=None,
                                 response_deserializer=None)
    responses = call(iter([opened.SerializeToString()]),
                     metadata=rpc.call_metadata(tether.parse_url(secured.url)), timeout=2)
    with pytest.raises(grpc.RpcError) as gone:
        for _ in responses:
            pass
    assert gone.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # only the plan came
    channel.close()
    with secured.client() as client:
        wait_until(lambda: not client.status().streams, "the timed-out stream closed",
                   every=0.2)
