"""The daemon's send path delivers every kind of column intact, plain and over TLS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.feather as feather
import pytest

import tether

from ..conftest import collect
from ..unit.test_send_path import _text_table


@pytest.mark.parametrize("codec", ["none", "zstd"])
@pytest.mark.parametrize("shuffle", [False, True])
def test_the_daemon_sends_every_kind_of_column_intact(serve, tmp_path: Path, codec: str,
                                                       shuffle: bool) -> None:
    """Through the real daemon and loader: fixed, ragged, text and bytes columns,
    each row once, equal to what was written."""
    table = _text_table(700)
    (tmp_path / "data").mkdir()
    feather.write_feather(table, tmp_path / "data" / "mixed.arrow", chunksize=128,
                          compression="uncompressed")
    daemon = serve(tmp_path / "data" / "mixed.arrow")
    loader = tether.Loader(daemon.url, dataset="mixed", batch_size=50, codec=codec,
                           shuffle=shuffle, seed=1, shard_bytes=2048)
    batches, _ = collect(loader)
    seen = {}
    for batch in batches:
        for row, row_id in enumerate(batch["id"].tolist()):
            assert row_id not in seen
            seen[row_id] = (batch["x"][row], list(batch["tokens"][row]), batch["text"][row],
                            batch["blob"][row])
    assert sorted(seen) == list(range(700))
    want = table.to_pydict()
    for i, (x, tokens, text, blob) in seen.items():
        assert x == np.float32(want["x"][i])
        assert tokens == want["tokens"][i]
        assert text == want["text"][i]
        assert bytes(blob) == want["blob"][i]
