"""`len(loader)` is the number of batches the loop receives per epoch, for every
way a stream is cut; `to_jax()` and `to_grain()` report the same."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tether

from ..conftest import DaemonProcess

ROWS = 1_003  # no batch size below divides it: every cut leaves a remainder


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory):
    """One daemon for the module: the tests only read."""
    root = tmp_path_factory.mktemp("length")
    (root / "data").mkdir()
    pq.write_table(pa.table({"id": np.arange(ROWS), "label": np.arange(ROWS) % 10,
                             "tokens": [list(range(i % 7 + 1)) for i in range(ROWS)]}),
                   root / "data" / "train.parquet", row_group_size=100)
    with DaemonProcess([root / "data" / "train.parquet"], root / "state") as served:
        yield served
        assert served.stop() == 0


def _batches_per_epoch(loader: tether.Loader) -> list[int]:
    counts: Counter[int] = Counter()
    for _ in loader:
        counts[loader.epoch] += 1
    return [counts[epoch] for epoch in sorted(counts)]


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("filter", ["", "label < 7"])
@pytest.mark.parametrize("process_count", [1, 3])
def test_len_is_the_batches_each_epoch_delivers(daemon, shuffle: bool, drop_last: bool,
                                                filter: str, process_count: int) -> None:
    for index in range(process_count):
        loader = tether.Loader(daemon.url, dataset="train", batch_size=64, columns=["id"],
                               shuffle=shuffle, seed=3, num_epochs=2, drop_last=drop_last,
                               filter=filter or None, process_index=index,
                               process_count=process_count)
        with loader:
            before = len(loader)  # from the daemon's description, before any stream
            rows = loader.rows_per_epoch
            assert _batches_per_epoch(loader) == [before, before]
            assert len(loader) == loader.batches_per_epoch == before  # and after
            assert loader.rows_per_epoch == rows
        selected = ROWS if not filter else int(np.sum(np.arange(ROWS) % 10 < 7))
        whole = process_count * 64
        if process_count == 1 and not drop_last:
            assert (rows, before) == (selected, -(-selected // 64))
        else:
            assert (rows, before) == (selected // whole * 64, selected // whole)


@pytest.mark.jax
def test_to_jax_reports_the_loaders_length(daemon) -> None:
    pytest.importorskip("jax")
    with tether.Loader(daemon.url, dataset="train", batch_size=100, columns=["id"]) as loader:
        batches = loader.to_jax()
        assert len(batches) == len(loader) == 11
        assert sum(1 for _ in batches) == 11


@pytest.mark.jax
def test_to_grain_reports_the_loaders_length(daemon) -> None:
    pytest.importorskip("grain")
    with tether.Loader(daemon.url, dataset="train", batch_size=100, columns=["id"]) as loader:
        assert len(loader.to_grain()) == len(loader) == 11


def test_a_length_that_cannot_be_known_is_a_clear_type_error(daemon) -> None:
    packed = tether.Loader(daemon.url, dataset="train", batch_size=8, columns=["tokens"],
                           pack={"tokens": 16})
    with packed:
        with pytest.raises(TypeError, match="pack= is unknown before packing"):
            len(packed)
        assert packed.rows_per_epoch == ROWS  # the sequences are known


def test_len_follows_a_restored_state_and_the_state_stays_exact(daemon, tmp_path: Path) -> None:
    """Mid-epoch, len() still says a full epoch's batches (as DataLoader's does)."""
    first = tether.Loader(daemon.url, dataset="train", batch_size=50, columns=["id"])
    with first:
        batches = iter(first)
        next(batches)
        state = first.state_dict()
    second = tether.Loader(daemon.url, dataset="train", batch_size=50, columns=["id"])
    second.load_state_dict(state)
    with second:
        assert len(second) == 21 and sum(1 for _ in second) == 20


def test_a_closed_loader_says_so(daemon) -> None:
    loader = tether.Loader(daemon.url, dataset="train", batch_size=100, columns=["id"])
    loader.close()
    for use in (len, lambda loader: next(iter(loader))):
        with pytest.raises(tether.RequestError, match="this loader is closed"):
            use(loader)
