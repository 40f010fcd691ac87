"""A loader's query (run_remote_query): the real DuckDB, sandboxed. Everything
that reaches past the served datasets is refused with a clear RequestError;
a plain SELECT gives what DuckDB gives when it runs the query itself."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from tether.daemon.prepare.remote_sql import run_remote_query
from tether.daemon.sources import discover
from tether.wire.errors import RequestError

duckdb = pytest.importorskip("duckdb")  # the daemon extra; not on the oldest loader stack


@pytest.fixture
def served(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(1)
    pq.write_table(pa.table({"id": np.arange(2000), "x": rng.standard_normal(2000),
                             "label": rng.integers(0, 5, 2000)}), data / "train.parquet")
    pacsv.write_csv(pa.table({"label": np.arange(5), "name": list("abcde")}), data / "labels.csv")
    conn = sqlite3.connect(data / "shop.sqlite")
    conn.execute("CREATE TABLE items (id INTEGER, price REAL)")
    conn.executemany("INSERT INTO items VALUES (?, ?)", [(i, i / 2) for i in range(20)])
    conn.commit()
    conn.close()
    outside = tmp_path / "secret.parquet"  # a file the daemon does not serve
    pq.write_table(pa.table({"password": ["hunter2"]}), outside)
    return data, discover(data), tmp_path / "cache", outside


def rows(source) -> list[tuple]:
    return [tuple(r.values()) for r in pa.ipc.open_file(source.paths[0]).read_all().to_pylist()]


def test_a_select_equals_duckdb_running_it_directly(served) -> None:
    data, found, cache, _ = served
    query = ("SELECT t.label, l.name, count(*) AS n, avg(t.x) AS mean FROM train t "
             "JOIN labels l USING (label) WHERE t.x > -1 GROUP BY ALL ORDER BY t.label")
    source = run_remote_query(query, found, cache)
    direct = duckdb.connect()
    direct.execute(f"CREATE VIEW train AS SELECT * FROM read_parquet('{data}/train.parquet')")
    direct.execute(f"CREATE VIEW labels AS SELECT * FROM read_csv('{data}/labels.csv')")
    expected = direct.execute(query).fetchall()
    got = rows(source)
    assert [r[:3] for r in got] == [r[:3] for r in expected] and len(got) == 5
    assert np.allclose([r[3] for r in got], [r[3] for r in expected])
    assert source.format == "sql" and source.snapshot_time > 0


def test_the_same_query_on_the_same_data_reuses_its_snapshot(served) -> None:
    data, found, cache, _ = served
    query = "SELECT id FROM train WHERE label = 2 ORDER BY id"
    first = run_remote_query(query, found, cache)
    again = run_remote_query(query, found, cache)
    assert again.paths == first.paths and again.snapshot_time == first.snapshot_time
    pq.write_table(pa.table({"id": [7], "x": [0.0], "label": [2]}), data / "train.parquet")
    changed = run_remote_query(query, discover(data), cache)
    assert changed.paths != first.paths and rows(changed) == [(7,)]


def test_database_tables_are_visible_by_their_snapshots(served) -> None:
    _, found, cache, _ = served
    source = run_remote_query('SELECT sum(price) AS total FROM "shop.items" WHERE id < 4',
                              found, cache)
    assert rows(source) == [(3.0,)]


@pytest.mark.parametrize(("query", "says"), [
    ("SELECT * FROM read_csv('/etc/passwd')", "disabled"),
    ("SELECT * FROM '/etc/passwd'", "passwd does not exist"),  # no replacement scan
    ("SELECT * FROM glob('/etc/*')", "disabled"),
    ("COPY (SELECT 1) TO '/tmp/x'", "COPY"),
    ("ATTACH '/tmp/x.db'", "ATTACH"),
    ("INSTALL httpfs", "LOAD"),
    ("LOAD httpfs", "LOAD"),
    ("SET enable_external_access=true", "SET"),
    ("SELECT 1; SELECT 2", "one SELECT"),
    ("CREATE TABLE t AS SELECT 1", "CREATE"),
    ("PRAGMA version", "PRAGMA"),
    ("CALL pragma_version()", "CALL"),
    ("DELETE FROM train", "DELETE"),
    ("SELECT * FROM secret_rows", "secret_rows"),  # a Python name in scope: not a table
    ("SELEKT 1", "does not parse"),
])
def test_anything_past_the_served_datasets_is_refused(served, query: str, says: str) -> None:
    _, found, cache, _ = served
    secret_rows = pa.table({"password": ["hunter2"]})  # noqa: F841 - what a replacement scan finds
    with pytest.raises(RequestError, match=says):
        run_remote_query(query, found, cache)


def test_a_file_outside_the_served_datasets_cannot_be_read(served) -> None:
    _, found, cache, outside = served
    for query in (f"SELECT * FROM read_parquet('{outside}')", f"SELECT * FROM '{outside}'",
                  f"SELECT * FROM train, read_parquet('{outside}')"):
        with pytest.raises(RequestError, match="disabled by configuration"):
            run_remote_query(query, found, cache)


def test_a_query_past_its_time_limit_is_interrupted(served) -> None:
    _, found, cache, _ = served
    query = "SELECT count(*) FROM range(100000000) a, range(100000000) b"
    with pytest.raises(RequestError, match="ran past its 0.5 s time limit"):
        run_remote_query(query, found, cache, time_limit_s=0.5)


def test_a_query_past_its_memory_limit_fails_saying_so(served) -> None:
    _, found, cache, _ = served
    query = "SELECT list(range) AS big FROM range(50000000) GROUP BY range % 2"
    with pytest.raises(RequestError, match="(?i)memory"):
        run_remote_query(query, found, cache, memory_limit="50MB")
