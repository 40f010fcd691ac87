"""A query served as a dataset streams every row once, shuffled, end to end."""

from __future__ import annotations

from pathlib import Path

import tether

from ..conftest import collect
from ..unit.test_sql_datasets import duckdb, write_files


def test_end_to_end_a_query_streams_every_row_once_shuffled(tmp_path: Path, serve) -> None:
    data = tmp_path / "data"
    write_files(data)
    query = "SELECT id, x FROM train WHERE label < 5"
    daemon = serve(data, args=("--sql", f"cheap={query}"))
    expected = duckdb.connect().execute(
        query.replace("train", f"read_parquet('{data}/train.parquet')")).fetchall()
    loader = tether.Loader(daemon.url, dataset="cheap", batch_size=32, shuffle=True, seed=3)
    _, got = collect(loader)
    assert sorted(got["id"].tolist()) == sorted(i for i, _ in expected)  # each row once
    assert got["id"].tolist() != sorted(got["id"].tolist())  # shuffled
    by_id = dict(expected)
    assert all(by_id[i] == x for i, x in zip(got["id"].tolist(), got["x"].tolist(), strict=True))
