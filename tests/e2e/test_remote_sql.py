"""Loader(sql=...) through the real daemon: refused unless the owner allowed it,
then read-only, over the served datasets only, its rows exactly the query's."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tether
from tether.wire.errors import RequestError

duckdb = pytest.importorskip("duckdb")

QUERY = "SELECT id, score * 2 AS doubled FROM train WHERE label = 1"


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "data"
    folder.mkdir()
    pq.write_table(pa.table({"id": np.arange(3000), "label": rng.integers(0, 4, 3000),
                             "score": rng.random(3000)}), folder / "train.parquet")
    return folder / "train.parquet"


def test_refused_unless_the_daemon_allows_sql(data, serve) -> None:
    daemon = serve(data)
    loader = tether.Loader(daemon.url, sql=QUERY, batch_size=64)
    with pytest.raises(RequestError, match="--allow-sql"):
        iter(loader)


def test_a_query_streams_its_rows_shuffled_and_resumes(data, serve) -> None:
    daemon = serve(data, args=("--allow-sql",))
    con = duckdb.connect()
    want = con.execute(QUERY.replace("FROM train", f"FROM '{data}'")).df()
    options = dict(sql=QUERY, batch_size=50, shuffle=True, seed=4)
    with tether.Loader(daemon.url, **options) as loader:
        batches = list(loader)
    ids = np.concatenate([b["id"] for b in batches])
    assert sorted(ids.tolist()) == sorted(want.id.tolist()) and ids.tolist() != sorted(ids)
    doubled = dict(zip(want.id, want.doubled, strict=True))
    for batch in batches:
        np.testing.assert_allclose(batch["doubled"], [doubled[i] for i in batch["id"]])
    with tether.Loader(daemon.url, **options) as loader:
        it = iter(loader)
        next(it), next(it)
        state = loader.state_dict()
    with tether.Loader(daemon.url, **options) as resumed:
        resumed.load_state_dict(state)
        assert [b["id"].tolist() for b in resumed] == [b["id"].tolist() for b in batches[2:]]


@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT 1; SELECT 2",
    "COPY (SELECT 1) TO '/tmp/tether-copied.csv'",
    "ATTACH '/tmp/tether-attached.db'",
    "INSTALL httpfs",
])
def test_a_query_cannot_reach_past_the_served_datasets(data, serve, sql: str) -> None:
    daemon = serve(data, args=("--allow-sql",))
    loader = tether.Loader(daemon.url, sql=sql, batch_size=8)
    with pytest.raises(RequestError):
        iter(loader)
    with tether.Loader(daemon.url, dataset="train", batch_size=1000) as loader:
        assert sum(len(b["id"]) for b in loader) == 3000  # and the daemon still serves
