"""Text, bytes and token lists, served by the real daemon, arrive exactly."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import tether
from tether.wire.errors import RequestError

from ..conftest import state_after

ROWS = 1000


def _table(rows: int = ROWS, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    words = ["α", "cat", "", "naïve café", "日本語", "x" * 300, "tab\there", "line\nbreak"]
    lengths = rng.integers(0, 40, rows)
    return pa.table({
        "id": np.arange(rows, dtype=np.int64),
        "text": [f"{i}:{words[i % len(words)]}" for i in range(rows)],
        "blob": [bytes(rng.integers(0, 256, i % 17, dtype=np.uint8)) for i in range(rows)],
        "tokens": pa.array([rng.integers(0, 50_000, n).tolist() for n in lengths],
                           type=pa.list_(pa.int64())),
        "big": pa.array([rng.integers(0, 9, n).tolist() for n in lengths],
                        type=pa.large_list(pa.int32())),
    })


@pytest.fixture(scope="module")
def text_daemon(tmp_path_factory):
    from ..conftest import DaemonProcess

    root = tmp_path_factory.mktemp("e2e-text")
    (root / "data").mkdir()
    table = _table()
    pq.write_table(table, root / "data" / "docs.parquet", row_group_size=128)
    pacsv.write_csv(table.select(["id", "text"]).slice(0, 200), root / "data" / "notes.csv")
    daemon = DaemonProcess([root / "data"], root / "state")
    yield daemon, table
    assert daemon.stop() == 0


def _rows(batches: list[dict], name: str) -> list:
    return [value for batch in batches for value in batch[name]]


@pytest.mark.parametrize("codec", ["auto", "none", "zstd"])
def test_strings_bytes_and_token_lists_round_trip(text_daemon, codec: str) -> None:
    daemon, table = text_daemon
    with tether.Loader(daemon.url, dataset="docs", batch_size=64, codec=codec,
                       shard_bytes=4096) as loader:
        batches = list(loader)
    assert [len(b["id"]) for b in batches] == [64] * 15 + [40]
    batch = batches[0]
    assert batch["text"].dtype == object and isinstance(batch["text"][0], str)
    assert isinstance(batch["blob"][0], bytes)
    assert isinstance(batch["tokens"][0], np.ndarray) and batch["tokens"][0].dtype == np.int64
    assert batch["big"][0].dtype == np.int32
    assert _rows(batches, "text") == table.column("text").to_pylist()
    assert _rows(batches, "blob") == table.column("blob").to_pylist()
    assert [t.tolist() for t in _rows(batches, "tokens")] == table.column("tokens").to_pylist()
    assert [t.tolist() for t in _rows(batches, "big")] == table.column("big").to_pylist()


def test_csv_text_round_trips(text_daemon) -> None:
    daemon, table = text_daemon
    with tether.Loader(daemon.url, dataset="notes", batch_size=50) as loader:
        texts = _rows(list(loader), "text")
    assert texts == table.column("text").to_pylist()[:200]


def test_shuffled_text_is_every_row_once_and_resumes_exactly(text_daemon) -> None:
    daemon, table = text_daemon
    options = dict(dataset="docs", batch_size=32, shuffle=True, seed=7, num_epochs=2,
                   shard_bytes=4096)
    expected_text = table.column("text").to_pylist()
    with tether.Loader(daemon.url, **options) as loader:
        whole = list(loader)
    first_epoch = whole[:len(whole) // 2]
    ids = np.concatenate([b["id"] for b in first_epoch])
    assert sorted(ids.tolist()) == list(range(ROWS)) and ids.tolist() != list(range(ROWS))
    for batch in whole:  # each row's text travels with its id
        assert [expected_text[i] for i in batch["id"]] == list(batch["text"])

    state = state_after(daemon.url, 11, **options)
    with tether.Loader(daemon.url, **options) as resumed:
        resumed.load_state_dict(state)
        rest = list(resumed)
    assert len(rest) == len(whole) - 11
    for got, want in zip(rest, whole[11:], strict=True):
        assert got["id"].tolist() == want["id"].tolist()
        assert list(got["text"]) == list(want["text"])
        assert [t.tolist() for t in got["tokens"]] == [t.tolist() for t in want["tokens"]]


def test_token_lists_need_pad_or_pack_for_jax(text_daemon) -> None:
    pytest.importorskip("jax")
    daemon, _ = text_daemon
    with tether.Loader(daemon.url, dataset="docs", batch_size=32,
                       columns=["id", "tokens"]) as loader, \
            pytest.raises(RequestError, match=r"pad=\{'tokens': L\}.*pack=\{'tokens': L\}"):
        next(iter(loader.to_jax()))


def test_text_stays_numpy_beside_jax_arrays(text_daemon) -> None:
    jax = pytest.importorskip("jax")
    daemon, table = text_daemon
    with tether.Loader(daemon.url, dataset="docs", batch_size=32,
                       columns=["id", "text"]) as loader:
        batch = next(iter(loader.to_jax()))
    assert isinstance(batch["id"], jax.Array)
    assert isinstance(batch["text"], np.ndarray)
    assert list(batch["text"]) == table.column("text").to_pylist()[:32]
