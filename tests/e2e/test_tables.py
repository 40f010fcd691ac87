"""Tables as people keep them: every common Arrow type delivered or refused
at open with the option that serves it, values equal to pandas' own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tether

from ..conftest import collect


@pytest.mark.parametrize("codec", ["auto", "zstd", "none"])
def test_a_text_column_of_empty_strings_streams_with_any_codec(serve, tmp_path: Path,
                                                               codec: str) -> None:
    """Was an internal error with codec="auto": its sample of 0 bytes divided by zero."""
    pq.write_table(pa.table({"id": np.arange(100), "text": [""] * 100}), tmp_path / "t.parquet")
    daemon = serve(tmp_path / "t.parquet")
    _, columns = collect(tether.Loader(daemon.url, dataset="t", batch_size=10, codec=codec,
                                       shuffle=True, seed=1))
    assert sorted(columns["id"].tolist()) == list(range(100))
    assert columns["text"].tolist() == [""] * 100
