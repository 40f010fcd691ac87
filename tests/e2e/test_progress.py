"""progress=True draws a bar; stats() says how long the loop waited and on what:
a slow link, a slow daemon or a slow training step each show where they are."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time

import pytest

import tether
from tether.bench.link import Link, ShapedProxy
from tether.wire.url import parse_url

from ..conftest import DaemonProcess


def _drain(loader: tether.Loader, step_seconds: float = 0.0) -> dict:
    for _ in loader:
        if step_seconds:
            time.sleep(step_seconds)
    return loader.stats()


def test_a_bar_per_epoch_in_a_terminal(npy_dataset, serve) -> None:
    pytest.importorskip("tqdm")  # (the loader's Python draws the bar)
    daemon = serve(npy_dataset(4000))
    script = (f"import tether\nfor _ in tether.Loader({daemon.url!r}, dataset='train', "
              "batch_size=100, num_epochs=2, progress=True): pass\n")
    err = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stderr
    assert "epoch 0" in err and "epoch 1" in err and "4000/4000" in err
    assert "samples/s" in err and "MB/s" in err and "waited" in err


def test_a_slow_training_step_barely_waits(npy_dataset, serve) -> None:
    daemon = serve(npy_dataset(2000))
    stats = _drain(tether.Loader(daemon.url, dataset="train", batch_size=100, prefetch=4),
                   step_seconds=0.05)
    assert stats["rows"] == 2000 and stats["samples_per_s"] > 0
    assert stats["waited_share"] < 0.5


def test_a_slow_daemon_is_named(npy_dataset, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TETHER_TEST_ENCODE_DELAY", "0.1")
    daemon = DaemonProcess([npy_dataset(2000)], tmp_path / "slow-state")
    try:
        stats = _drain(tether.Loader(daemon.url, dataset="train", batch_size=100,
                                     shard_bytes=16 << 10, codec="none"))
    finally:
        assert daemon.stop() == 0
    waited = stats["waited_seconds"]
    assert stats["waited_share"] > 0.5
    assert waited["daemon"] > waited["network"] and waited["daemon"] > waited["loader"]


def test_a_slow_link_is_named(npy_dataset, serve) -> None:
    daemon = serve(npy_dataset(3000))
    endpoint = parse_url(daemon.url)
    with ShapedProxy((endpoint.host, endpoint.port), Link("slow", 8e6, 0.01)) as proxy:
        shaped = dataclasses.replace(endpoint, port=proxy.port)
        stats = _drain(tether.Loader(shaped, dataset="train", batch_size=100, codec="none"))
    waited = stats["waited_seconds"]
    assert stats["waited_share"] > 0.5
    assert waited["network"] > waited["daemon"] and waited["network"] > waited["loader"]
    assert stats["compression_ratio"] >= 1.0  # (narrowed integers even with codec none)


def _status_while_streaming(daemon, step_seconds: float) -> str:
    from tether.inspect import format_split

    with tether.Loader(daemon.url, dataset="train", batch_size=100, shard_bytes=16 << 10,
                       codec="none", num_epochs=None) as loader, \
            tether.connect(daemon.url) as client:
        for count, _ in enumerate(loader):
            time.sleep(step_seconds)
            if count == 30:
                streams = client.status().streams
                return format_split(streams[0])
    raise AssertionError("the stream ended early")


def test_status_names_the_training_loop_when_it_is_the_limit(npy_dataset, serve) -> None:
    daemon = serve(npy_dataset(2000))
    assert "the training loop is the limit" in _status_while_streaming(daemon, 0.03)


def test_status_names_the_daemon_when_it_is_the_limit(npy_dataset, tmp_path,
                                                      monkeypatch) -> None:
    monkeypatch.setenv("TETHER_TEST_ENCODE_DELAY", "0.05")
    daemon = DaemonProcess([npy_dataset(2000)], tmp_path / "slow-state")
    try:
        assert "the daemon (disk, decoding, transforms) is the limit" in \
            _status_while_streaming(daemon, 0.0)
    finally:
        assert daemon.stop() == 0
