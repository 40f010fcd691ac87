"""Token lists through the real daemon and loader: padded, packed, resumed."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tether
from tether.wire.errors import RequestError

from ..conftest import state_after

ROWS = 3000
L = 64


def _tokens(rows: int = ROWS, seed: int = 0) -> list[list[int]]:
    """Lengths around L (some longer: split or truncated), some empty."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(L / 3), 0.9, rows).astype(int), 0, 4 * L)
    return [rng.integers(1, 30_000, n).tolist() for n in lengths]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from ..conftest import DaemonProcess

    root = tmp_path_factory.mktemp("e2e-sequences")
    tokens = _tokens()
    table = pa.table({"id": np.arange(ROWS), "tokens": pa.array(tokens, pa.list_(pa.int32()))})
    pq.write_table(table, root / "corpus.parquet", row_group_size=500)
    daemon = DaemonProcess([root / "corpus.parquet"], root / "state")
    yield daemon, tokens
    assert daemon.stop() == 0


def test_pad_is_exact(corpus) -> None:
    daemon, tokens = corpus
    with tether.Loader(daemon.url, dataset="corpus", batch_size=100, pad={"tokens": L},
                       pad_value=-1, shuffle=True, seed=1) as loader:
        batches = list(loader)
        truncated = loader.stats()["sequences_truncated"]
    assert truncated == sum(len(t) > L for t in tokens) > 0
    for batch in batches:
        assert batch["tokens"].shape == (len(batch["id"]), L)
        assert batch["tokens"].dtype == np.int32 and batch["tokens_length"].dtype == np.int32
        for row, i in enumerate(batch["id"]):
            want = tokens[i][:L]
            assert batch["tokens_length"][row] == len(want)
            assert batch["tokens"][row, :len(want)].tolist() == want
            assert (batch["tokens"][row, len(want):] == -1).all()


def _unpack(batches: list[dict]) -> list[list[int]]:
    """The pieces in the packed rows, in order: (segment, positions) must be consistent."""
    pieces = []
    for batch in batches:
        assert batch["tokens"].shape == (16, L)
        for values, segments, positions in zip(batch["tokens"], batch["tokens_segment_ids"],
                                               batch["tokens_positions"], strict=True):
            used = segments > 0
            assert not used[np.argmin(used):].any() or used.all()  # padding only at the end
            for segment in range(1, int(segments.max(initial=0)) + 1):
                where = np.flatnonzero(segments == segment)
                assert len(where) and (np.diff(where) == 1).all()  # contiguous
                assert positions[where].tolist() == list(range(len(where)))
                pieces.append(values[where].tolist())
    return pieces


def _every_token_once(pieces: list[list[int]], tokens: list[list[int]]) -> None:
    got = np.sort(np.concatenate([np.array(p, dtype=np.int64) for p in pieces]))
    want = np.sort(np.concatenate([np.array(t, dtype=np.int64) for t in tokens]))
    np.testing.assert_array_equal(got, want)
    # Each sequence is whole, or split into pieces of L (the last shorter).
    whole = {tuple(t) for t in tokens if 0 < len(t) <= L}
    assert whole <= {tuple(p) for p in pieces}


def test_pack_delivers_every_token_once_per_epoch_and_resumes_exactly(corpus) -> None:
    daemon, tokens = corpus
    options = dict(dataset="corpus", batch_size=16, pack={"tokens": L}, shuffle=True, seed=4,
                   num_epochs=2, columns=["tokens"])
    with tether.Loader(daemon.url, **options) as loader:
        batches = list(loader)
        stats = loader.stats()
    assert stats["fill"] >= 0.85, stats
    per_epoch = len(batches) // 2
    for epoch in (batches[:per_epoch], batches[per_epoch:]):
        _every_token_once(_unpack(epoch), tokens)
    assert not np.array_equal(batches[0]["tokens"], batches[per_epoch]["tokens"])

    for stop in (1, 7, per_epoch, per_epoch + 3):
        state = state_after(daemon.url, stop, **options)
        with tether.Loader(daemon.url, **options) as resumed:
            resumed.load_state_dict(state)
            rest = list(resumed)
        assert len(rest) == len(batches) - stop, stop
        for got, want in zip(rest, batches[stop:], strict=True):
            for name in ("tokens", "tokens_segment_ids", "tokens_positions"):
                np.testing.assert_array_equal(got[name], want[name])


def test_pack_feeds_jax(corpus) -> None:
    jax = pytest.importorskip("jax")
    daemon, _ = corpus
    with tether.Loader(daemon.url, dataset="corpus", batch_size=8, pack={"tokens": L},
                       columns=["tokens"]) as loader:
        batch = next(iter(loader.to_jax()))
    assert isinstance(batch["tokens"], jax.Array) and batch["tokens"].shape == (8, L)
    assert batch["tokens_segment_ids"].shape == (8, L)


def test_bad_pad_and_pack_options_are_refused(corpus) -> None:
    daemon, _ = corpus
    with pytest.raises(RequestError, match="both padded and packed"):
        tether.Loader(daemon.url, dataset="corpus", batch_size=8, pad={"tokens": L},
                      pack={"tokens": L})
    with pytest.raises(RequestError, match="num_epochs=None"):
        tether.Loader(daemon.url, dataset="corpus", batch_size=8, pack={"tokens": L},
                      process_index=0, process_count=2, seed=0)
    with pytest.raises(RequestError, match="maps column names to a length"):
        tether.Loader(daemon.url, dataset="corpus", batch_size=8, pad={"tokens": 0})


def test_pad_or_pack_of_a_column_that_is_not_token_lists_is_refused_at_open(corpus) -> None:
    daemon, _ = corpus
    loader = tether.Loader(daemon.url, dataset="corpus", batch_size=8, pad={"id": 4})
    with pytest.raises(RequestError, match="'id' is a fixed-shape tensor: pad= and pack="):
        iter(loader)
    loader = tether.Loader(daemon.url, dataset="corpus", batch_size=8, pack={"nope": 4})
    with pytest.raises(RequestError, match="'nope', which the stream does not carry"):
        iter(loader)


def test_a_mid_round_state_resumes_only_with_the_same_packing(corpus) -> None:
    daemon, _ = corpus
    options = dict(dataset="corpus", batch_size=16, columns=["tokens"], shuffle=True, seed=2)
    with tether.Loader(daemon.url, pack={"tokens": L}, **options) as loader:
        it = iter(loader)
        next(it)
        state = loader.state_dict()
    assert state["packing"]["rows"] == 16
    for other in ({"pack": {"tokens": L // 2}}, {"pad": {"tokens": L}}):
        with tether.Loader(daemon.url, **options, **other) as loader, \
                pytest.raises(RequestError, match="packed as"):
            loader.load_state_dict(state)
