"""A stalled training loop stops the daemon: in-flight shards stay within credits."""

from __future__ import annotations

import time

import numpy as np

import tether

from ..conftest import make_features

ROW_BYTES = sum(v[:1].nbytes for v in make_features(1).values())


def _stream_status(client: tether.Client):
    streams = client.status().streams
    assert len(streams) == 1
    return streams[0]


def test_stalled_consumer_keeps_daemon_within_its_credits(serve, npy_dataset) -> None:
    rows = 40_000  # 200 shards of 200 rows: far more than the window
    daemon = serve(npy_dataset(rows))
    prefetch = 4
    loader = tether.Loader(daemon.url, dataset="train", batch_size=100, prefetch=prefetch,
                           shard_bytes=200 * ROW_BYTES)
    batches = iter(loader)
    first = next(batches)
    assert loader.plan.shard_rows == 200
    with daemon.client() as client:
        samples = []
        for _ in range(10):  # the loop stalls for a second
            time.sleep(0.1)
            samples.append((_stream_status(client), client.status().rows_read))
        # The daemon has read ahead no further than the window allows, and stopped.
        assert all(s.in_flight <= prefetch for s, _ in samples)
        assert samples[-1][1] == samples[3][1], "the daemon kept reading while stalled"
        assert samples[-1][1] <= (prefetch + 1) * 200
        rest = [first["id"], *(b["id"] for b in batches)]
        ids = np.concatenate(rest)
    assert np.array_equal(ids, np.arange(rows))  # and nothing was lost on the way


def test_credits_are_per_stream(serve, npy_dataset) -> None:
    daemon = serve(npy_dataset(20_000))
    slow = iter(tether.Loader(daemon.url, dataset="train", batch_size=100, prefetch=2,
                              shard_bytes=200 * ROW_BYTES))
    next(slow)
    fast = tether.Loader(daemon.url, dataset="train", batch_size=100, shard_bytes=200 * ROW_BYTES)
    assert sum(len(b["id"]) for b in fast) == 20_000  # not held back by the stalled stream
    with daemon.client() as client:
        (stalled,) = client.status().streams
        assert stalled.in_flight <= 2
