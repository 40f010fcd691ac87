"""The daemon under files that change and peers that hoard (issue 9, items 5, 13, 15)."""

from __future__ import annotations

import numpy as np
import pytest

import tether


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
