"""SQLite files as datasets, and the owner's queries (`tether serve --sql`), on
real files: SQLite written by the stdlib, Parquet and CSV by pyarrow, the
queries run by the real DuckDB and SQLite, and compared with the same
queries run by them directly."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from tether.daemon.prepare.catalog import Catalog
from tether.daemon.prepare.preparation import Preparation
from tether.daemon.sources import discover
from tether.daemon.sources.sqlite import SqliteTableSource

duckdb = pytest.importorskip("duckdb")  # the daemon extra; not on the oldest loader stack


def make_shop(path: Path, items: int = 50) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE items (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, price REAL,
                            photo BLOB, stock);
        CREATE TABLE users (id INTEGER, email VARCHAR(80));
        CREATE VIEW dear AS SELECT id, price * 2 AS double_price FROM items WHERE price >= 5;
    """)
    conn.executemany("INSERT INTO items (name, price, photo, stock) VALUES (?, ?, ?, ?)",
                     [(f"item {i}", i * 0.25, bytes([i % 256]) * 3,
                       None if i % 7 == 0 else i) for i in range(items)])
    conn.executemany("INSERT INTO users VALUES (?, ?)", [(1, "a@x.org"), (2, None)])
    conn.commit()
    conn.close()
    return path


def rows_of(source) -> pa.Table:
    """What a snapshot source serves: its snapshot file, read whole (small here)."""
    return pa.ipc.open_file(source.paths[0]).read_all()


def sqlite_rows(path: Path, query: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def test_each_table_and_view_is_a_dataset_with_types_from_sqlite(tmp_path: Path) -> None:
    shop = make_shop(tmp_path / "shop.sqlite")
    catalog = Catalog([shop], tmp_path / "cache")
    # sqlite_sequence (AUTOINCREMENT's own table) is not served
    assert sorted(catalog.names) == ["shop.dear", "shop.items", "shop.users"]
    items = catalog.get("shop.items")
    assert (items.format, items.num_rows) == ("sqlite", 50)
    table = rows_of(items)
    assert table.schema.types == [pa.int64(), pa.string(), pa.float64(), pa.binary(),
                                  pa.int64()]  # `stock` has no declared type: by its values
    assert [tuple(r.values()) for r in table.to_pylist()] == sqlite_rows(
        shop, "SELECT * FROM items")
    assert rows_of(catalog.get("shop.users")).to_pylist() == [
        {"id": 1, "email": "a@x.org"}, {"id": 2, "email": None}]
    dear = rows_of(catalog.get("shop.dear"))
    assert dear.schema.types == [pa.int64(), pa.float64()]
    assert dear.num_rows == 30
    info = catalog.info("shop.items")
    assert info.snapshot_time > 0 and not info.error


def test_a_folder_serves_its_databases_and_skips_other_db_files(tmp_path: Path) -> None:
    make_shop(tmp_path / "shop.db")
    (tmp_path / "Thumbs.db").write_bytes(b"not a database")
    pacsv.write_csv(pa.table({"a": [1, 2]}), tmp_path / "plain.csv")
    assert sorted(f.name for f in discover(tmp_path)) == [
        "plain", "shop.dear", "shop.items", "shop.users"]
    with pytest.raises(ValueError, match="not a SQLite database"):
        discover(tmp_path / "Thumbs.db")


def test_the_snapshot_is_reused_until_the_file_changes_or_refresh(tmp_path: Path) -> None:
    shop = make_shop(tmp_path / "shop.sqlite")
    cache = tmp_path / "cache"
    first = SqliteTableSource("shop.items", [shop], cache, table="items")
    again = SqliteTableSource("shop.items", [shop], cache, table="items")
    assert again.paths == first.paths
    written = os.stat(first.paths[0]).st_ino
    assert os.stat(again.paths[0]).st_ino == written  # not rewritten

    refreshed = SqliteTableSource("shop.items", [shop], cache, table="items", refresh=True)
    assert refreshed.paths == first.paths
    assert os.stat(refreshed.paths[0]).st_ino != written  # `first` maps the old one: no reuse

    conn = sqlite3.connect(shop)
    conn.execute("INSERT INTO items (name, price) VALUES ('new', 1.0)")
    conn.commit()
    conn.close()
    changed = SqliteTableSource("shop.items", [shop], cache, table="items")
    assert changed.paths != first.paths and changed.num_rows == 51
    assert not first.paths[0].exists()  # the old version's snapshot is gone


def test_the_catalog_reopens_a_changed_database(tmp_path: Path) -> None:
    shop = make_shop(tmp_path / "shop.sqlite")
    catalog = Catalog([shop], tmp_path / "cache")
    assert catalog.get("shop.users").num_rows == 2
    conn = sqlite3.connect(shop)
    conn.execute("INSERT INTO users VALUES (3, 'c@x.org')")
    conn.commit()
    conn.close()
    assert catalog.get("shop.users").num_rows == 3


def test_a_value_that_does_not_fit_its_column_names_table_column_and_row(tmp_path: Path) -> None:
    path = tmp_path / "bad.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (n INTEGER, s TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(1, "a"), (2, "b"), ("three", "c")])
    conn.commit()
    conn.close()
    catalog = Catalog([path], tmp_path / "cache")
    error = catalog.info("bad.t").error
    assert "table 't'" in error and "column 'n'" in error and "row 2" in error
    assert "str 'three'" in error and "--sql" in error


def write_files(folder: Path) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    pq.write_table(pa.table({"id": np.arange(1000), "x": rng.standard_normal(1000),
                             "label": rng.integers(0, 10, 1000)}), folder / "train.parquet")
    pacsv.write_csv(pa.table({"label": np.arange(10), "name": [f"class {i}" for i in range(10)]}),
                    folder / "labels.csv")


QUERY = ('SELECT t.id, t.x, l.name FROM train t JOIN labels l ON t.label = l.label '
         'WHERE t.x > 0 ORDER BY t.id')


def test_a_query_over_parquet_and_csv_equals_duckdb_run_directly(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_files(data)
    catalog = Catalog([data], tmp_path / "cache",
                      preparation=Preparation(sql=(("positive", QUERY),)))
    source = catalog.get("positive")
    assert source.format == "sql"
    direct = duckdb.connect()
    direct.execute(f"CREATE VIEW train AS SELECT * FROM read_parquet('{data}/train.parquet')")
    direct.execute(f"CREATE VIEW labels AS SELECT * FROM read_csv('{data}/labels.csv')")
    expected = direct.execute(QUERY).fetchall()
    assert [tuple(r.values()) for r in rows_of(source).to_pylist()] == expected
    assert len(expected) > 400

    # the snapshot depends on the files the query can see: a change is a new one
    pq.write_table(pa.table({"id": [1], "x": [1.0], "label": [3]}), data / "train.parquet")
    assert [tuple(r.values()) for r in rows_of(catalog.get("positive")).to_pylist()] == [
        (1, 1.0, "class 3")]


def test_a_query_in_a_served_sqlite_database_equals_sqlite_run_directly(tmp_path: Path) -> None:
    shop = make_shop(tmp_path / "shop.sqlite")
    query = "SELECT id, name, price * 2 AS twice FROM items WHERE price < 5 ORDER BY price DESC"
    catalog = Catalog([shop], tmp_path / "cache",
                      preparation=Preparation(sql=(("shop.cheap", query),)))
    got = rows_of(catalog.get("shop.cheap"))
    assert got.schema.types == [pa.int64(), pa.string(), pa.float64()]
    assert [tuple(r.values()) for r in got.to_pylist()] == sqlite_rows(shop, query)
    assert catalog.info("shop.cheap").snapshot_time > 0


def test_a_bad_query_is_listed_with_its_error_and_the_rest_serve(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_files(data)
    shop = make_shop(tmp_path / "shop.sqlite")
    catalog = Catalog([data, shop], tmp_path / "cache", preparation=Preparation(sql=(
        ("broken", "SELECT nope FROM train"),
        ("shop.broken", "SELECT * FROM no_such_table"),
        ("fine", "SELECT count(*) AS n FROM train"),
    )))
    error = catalog.info("broken").error
    assert "SELECT nope FROM train" in error and "nope" in error and '"train"' in error
    assert "no_such_table" in catalog.info("shop.broken").error
    assert rows_of(catalog.get("fine")).to_pylist() == [{"n": 1000}]
    assert catalog.get("train").num_rows == 1000
    assert catalog.get("shop.items").num_rows == 50




MEMORY_PROBE = textwrap.dedent("""
    import sys
    from pathlib import Path
    from tether.daemon.sources.sqlite import SqliteTableSource

    def peak_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

    before = peak_mb()
    source = SqliteTableSource("big.t", [Path(sys.argv[1])], Path(sys.argv[2]), table="t")
    print(source.num_rows, peak_mb() - before)
""")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
def test_a_large_table_is_snapshotted_in_bounded_memory(tmp_path: Path) -> None:
    """2M rows (~400 MB as Python rows, 130 MB as Arrow) grow the process's peak
    by far less: the table streams through 65,536-row batches (this stands in
    for the issue's 5 GB table). What growth there is is constant: the first
    batch's conversion (pyarrow's allocator takes ~60 MB at once)."""
    rows = 2_000_000
    path = tmp_path / "big.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER, x REAL, s TEXT)")
    conn.execute(f"WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c "
                 f"WHERE i < {rows - 1}) INSERT INTO t SELECT i, i * 0.5, "
                 f"printf('row %40d', i) FROM c")
    conn.commit()
    conn.close()
    probe = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(path), str(tmp_path / "c")],
                           capture_output=True, text=True, timeout=120, check=True)
    served, growth_mb = probe.stdout.split()
    assert int(served) == rows
    assert float(growth_mb) < 200, f"peak memory grew {growth_mb} MB"
