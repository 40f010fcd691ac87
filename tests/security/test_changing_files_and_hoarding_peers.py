"""The daemon under files that change and peers that hoard (issue 9, items 5, 13, 15)."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import numpy as np
import pytest

import tether
from tether.wire import rpc
from tether.wire.v1 import tether_pb2 as pb

from ..conftest import wait_until


def test_a_npy_rewritten_while_streaming_fails_the_stream_not_the_daemon(serve,
                                                                         tmp_path) -> None:
    """It used to die of SIGBUS: the file was memory-mapped and shrank under it."""
    folder = tmp_path / "data" / "train"
    folder.mkdir(parents=True)
    np.save(folder / "id.npy", np.arange(2_000_000, dtype=np.int64))
    daemon = serve(folder)
    loader = tether.Loader(daemon.url, dataset="train", batch_size=1000, shuffle=True, seed=0,
                           shard_bytes=64 << 10, prefetch=2,
                           retry=tether.RetryPolicy(timeout=5, connect_timeout=5))
    batches = iter(loader)
    for _ in range(5):
        next(batches)
    np.save(folder / "id.npy", np.arange(1_000, dtype=np.int64))  # rewritten in place, shorter
    with pytest.raises(tether.DatasetError, match="changed"):
        for _ in batches:
            pass
    with daemon.client() as client:  # still serving; the fixture checks it exits cleanly
        assert [d.name for d in client.datasets()] == ["train"]


def _rss_peak(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in bytes."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if ":" in line)
    return tuple(int(fields[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM"))


def _hoard(url: str, count: int, **open_fields) -> tuple[list, grpc.Channel]:
    """`count` streams that ask for everything and read nothing."""
    endpoint = tether.parse_url(url)
    channel = rpc.open_channel(endpoint)
    method = channel.stream_stream(rpc.method_path(rpc.STREAM), request_serializer=None,
                                   response_deserializer=None)
    calls = []
    for _ in range(count):
        opened = pb.StreamRequest(open=pb.OpenStream(dataset="train", batch_size=1000,
                                                     **open_fields))
        calls.append(method(iter([opened.SerializeToString()]),
                            metadata=rpc.call_metadata(endpoint)))
    return calls, channel


@pytest.fixture
def fifty_megabytes(tmp_path) -> Path:
    folder = tmp_path / "data" / "train"
    folder.mkdir(parents=True)
    np.save(folder / "x.npy", np.ones((200_000, 64), dtype=np.float32))
    return folder


def _in_flight(daemon) -> int:
    """Shards produced and not acknowledged, over every stream, once it stops growing."""
    with daemon.client() as client:
        last, total = -1, 0
        for _ in range(40):
            total = sum(s.in_flight for s in client.status().streams)
            if total == last:
                break
            last = total
            time.sleep(0.5)
        return total


def test_streams_that_hoard_credits_share_one_memory_budget(serve, fifty_megabytes) -> None:
    """Six streams asking for every shard and reading none held up to 1 GiB each."""
    daemon = serve(fifty_megabytes, args=("--max-memory", "64MiB"))
    calls, channel = _hoard(daemon.url, 6, initial_credits=2**40, shard_bytes=4 << 20)
    try:
        shard = 4 << 20  # 16,384 rows of 256 bytes: exactly 4 MiB
        # the budget, plus one shard a stream may always take to make progress
        assert _in_flight(daemon) <= (64 << 20) // shard + 6
        rss, peak = _rss_peak(daemon.proc.pid)
    finally:
        for call in calls:
            call.cancel()
        channel.close()
    assert peak < 1 << 30


def test_one_address_may_not_take_every_stream_slot(serve, fifty_megabytes) -> None:
    daemon = serve(fifty_megabytes)
    calls, channel = _hoard(daemon.url, 32, initial_credits=0)
    try:
        with daemon.client() as client:  # the 32 are open, holding nothing
            wait_until(lambda: len(client.status().streams) == 32, "32 hoarding streams open")
        with pytest.raises(tether.Busy, match="32 streams from .* are open already"):
            iter(tether.Loader(daemon.url, dataset="train", batch_size=10))
    finally:
        for call in calls:
            call.cancel()
        channel.close()
    assert len(list(tether.Loader(daemon.url, dataset="train", batch_size=100_000))) == 2


@pytest.mark.parametrize("configured", ["flag", "environment"])
def test_a_client_that_stops_reading_is_cancelled_and_its_memory_freed(
        serve, fifty_megabytes, monkeypatch, configured: str) -> None:
    if configured == "environment":
        monkeypatch.setenv("TETHER_STALL_SECONDS", "2")
    daemon = serve(fifty_megabytes, args=("--stall-timeout", "2") if configured == "flag" else ())
    calls, channel = _hoard(daemon.url, 1, initial_credits=64, shard_bytes=4 << 20,
                            num_epochs=0)
    try:
        with daemon.client() as client:
            wait_until(lambda: client.status().streams, "the hoarding stream opened")
            wait_until(lambda: not client.status().streams,
                       "the daemon cancelled the stream that stopped reading", timeout=60,
                       every=0.2)
    finally:
        calls[0].cancel()
        channel.close()


def test_a_fixed_shard_size_below_the_floor_is_refused(serve, fifty_megabytes) -> None:
    daemon = serve(fifty_megabytes)
    calls, channel = _hoard(daemon.url, 1, initial_credits=4, shard_rows=1)
    try:
        with pytest.raises(grpc.RpcError) as refused:
            next(iter(calls[0]))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "below the floor" in refused.value.details()
    finally:
        channel.close()


def test_datasets_added_while_serving_are_found_without_a_restart(serve, tmp_path) -> None:
    root = tmp_path / "data"
    (root / "train").mkdir(parents=True)
    np.save(root / "train" / "id.npy", np.arange(100, dtype=np.int64))
    daemon = serve(root)
    np.savez(root / "extra.npz", extra=np.arange(7, dtype=np.int64))  # a new dataset
    time.sleep(1.1)  # the paths are searched again at most once a second
    got = np.concatenate([b["extra"] for b in tether.Loader(daemon.url, dataset="extra",
                                                            batch_size=5)])
    assert np.array_equal(got, np.arange(7))
    (root / "more").mkdir()
    np.save(root / "more" / "id.npy", np.arange(3, dtype=np.int64))
    time.sleep(1.1)  # listings search again at most once a second
    with daemon.client() as client:
        assert sorted(d.name for d in client.datasets()) == ["extra", "more", "train"]
    with pytest.raises(tether.DatasetNotFound, match="found within a second"):
        iter(tether.Loader(daemon.url, dataset="absent", batch_size=1))


def test_links_out_of_a_served_folder_are_served_only_when_asked(serve, tmp_path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    np.save(outside / "secret.npy", np.arange(5, dtype=np.int64))
    served = tmp_path / "served"
    served.mkdir()
    np.savez(served / "public.npz", x=np.arange(3))
    (served / "secret.npy").symlink_to(outside / "secret.npy")
    with serve(served).client() as client:
        assert [d.name for d in client.datasets()] == ["public"]
    with serve(served, args=("--follow-symlinks",)).client() as client:
        assert sorted(d.name for d in client.datasets()) == ["public", "secret"]
