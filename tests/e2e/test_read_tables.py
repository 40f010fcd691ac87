"""`client.read` / `read_batches` / `query` against the real daemon: the table
as pyarrow reads it at home (types, nulls, pandas' index and dtypes), its
columns, filter and limit applied there, a read cut twenty times resumed with
no row repeated or lost, and bounded memory for a table larger than the
loader's window."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")
import pyarrow.compute as pc  # noqa: E402
import pyarrow.feather as feather  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

import tether  # noqa: E402
from tether.bench.link import Link, ShapedProxy  # noqa: E402

from ..conftest import OWN_PEAK, DaemonProcess  # noqa: E402

ROWS = 30_000


def _frame(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "id": np.arange(rows),
        "price": np.where(rng.random(rows) < 0.1, np.nan, rng.random(rows)),
        "age": pd.array(np.where(rng.random(rows) < 0.2, None, rng.integers(0, 90, rows)),
                        dtype="Int64"),
        "city": pd.Categorical(rng.choice(["Oslo", "Lima", "Pune"], rows)),
        "when": pd.date_range("2024-01-01", periods=rows, freq="min", tz="Europe/Paris"),
        "note": np.where(rng.random(rows) < 0.3, None, rng.choice(["a", "bb", "ccc"], rows)),
    }, index=pd.Index(np.arange(rows) * 10, name="key"))
    frame.loc[frame.index[5], "when"] = pd.NaT
    return frame


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    frame = _frame(ROWS)
    frame.to_parquet(root / "people.parquet", row_group_size=4_000)
    _frame(20 * ROWS).to_parquet(root / "many.parquet", row_group_size=4_000)  # ~8 MB
    feather.write_feather(pa.Table.from_pandas(frame.reset_index(drop=True)),
                          root / "flat.feather", chunksize=5_000)
    folder = root / "tensors"
    folder.mkdir()
    np.save(folder / "x.npy", np.zeros((10, 3), np.float32))
    daemon = DaemonProcess([root / "people.parquet", root / "many.parquet",
                            root / "flat.feather", folder],
                           tmp_path_factory.mktemp("state"), "--allow-sql")
    yield root, frame, daemon
    assert daemon.stop() == 0, daemon.stderr_text()[-2000:]
    daemon.close()


def _same_index_width(table: pa.Table) -> pa.Table:
    """The table with int32 dictionary indices: pyarrow versions differ in the width
    they give a pandas category read from Parquet (the home's pyarrow may be newer
    than this one); values, nulls and every other type are compared exactly."""
    fields = [pa.field(f.name, pa.dictionary(pa.int32(), f.type.value_type), f.nullable,
                       f.metadata) if pa.types.is_dictionary(f.type) else f
              for f in table.schema]
    return table.cast(pa.schema(fields, metadata=table.schema.metadata))


def test_read_is_the_table_pyarrow_reads_and_to_pandas_the_owners_frame(home) -> None:
    root, frame, daemon = home
    with daemon.client() as client:
        before = client.status().bytes_sent
        table = client.read("people")
        flat = client.read("flat")
        assert client.status().bytes_sent > before  # reads are counted as streams are
    expected = _same_index_width(pq.read_table(root / "people.parquet"))
    table = _same_index_width(table)
    assert table.schema.equals(expected.schema, check_metadata=True)
    assert table.equals(expected)
    pd.testing.assert_frame_equal(table.to_pandas(), frame)  # index, Int64, category, tz
    assert flat.equals(feather.read_table(root / "flat.feather"))


def test_columns_filter_and_limit_are_applied_at_home(home) -> None:
    root, _, daemon = home
    with daemon.client() as client:
        table = client.read("people", columns=["id", "age", "city"],
                            filter="age > 30 and city == 'Oslo'", limit=1_000)
    whole = pq.read_table(root / "people.parquet", columns=["id", "age", "city"])
    mask = pc.and_(pc.greater(whole["age"], 30), pc.equal(whole["city"], "Oslo"))
    expected = whole.filter(pc.fill_null(mask, False)).slice(0, 1_000)
    assert table.num_rows == 1_000
    assert _same_index_width(table).equals(_same_index_width(expected))


def test_a_filter_that_selects_nothing_still_gives_the_schema(home) -> None:
    _, _, daemon = home
    with daemon.client() as client:
        table = client.read("people", columns=["id", "note"], filter="id < 0")
        none = client.read("people", limit=0)
    assert table.num_rows == 0 and table.schema.names == ["id", "note"]
    assert none.num_rows == 0 and "when" in none.schema.names


def test_query_returns_the_result_at_home_and_needs_allow_sql(home, serve) -> None:
    root, _, daemon = home
    with daemon.client() as client:
        result = client.query("SELECT id, city, \"when\" FROM people WHERE age IS NULL")
    whole = pq.read_table(root / "people.parquet")
    expected = whole.filter(pc.is_null(whole["age"])).select(["id", "city", "when"])
    assert result.sort_by("id").column("id").equals(expected.column("id"))
    assert result.column("when").type == pa.timestamp("ns", tz="Europe/Paris") or \
        result.column("when").type.tz is not None
    plain = serve(root / "people.parquet")
    with plain.client() as client, pytest.raises(tether.RequestError, match="--allow-sql"):
        client.query("SELECT 1")


def test_reads_are_refused_clearly(home) -> None:
    _, _, daemon = home
    with daemon.client() as client:
        with pytest.raises(tether.DatasetNotFound):
            client.read("nope")
        with pytest.raises(tether.RequestError, match="not a table"):
            client.read("tensors")
        with pytest.raises(tether.ColumnError, match="no column 'height'"):
            client.read("people", columns=["id", "height"])
        with pytest.raises(tether.ColumnError, match="no column 'height'"):
            client.read("people", filter="height > 2")
        with pytest.raises(ValueError, match="limit"):
            client.read("people", limit=-1)


def test_a_read_cut_twenty_times_resumes_without_repeating_or_losing_rows(home) -> None:
    root, _, daemon = home
    port = tether.parse_url(daemon.url).port
    proxy = ShapedProxy(("127.0.0.1", port), Link("cutting", None),
                        cut_range=(150_000, 400_000), seed=3)
    try:
        through = tether.parse_url(daemon.url).with_address("127.0.0.1", proxy.port)
        with tether.connect(through) as client:
            stream = client.read_batches("many", codec="zstd")
            table = pa.Table.from_batches(list(stream), schema=stream.schema)
    finally:
        cuts = proxy.close().count("cut after")
    assert cuts >= 20 and stream.reconnects >= 20
    assert _same_index_width(table).equals(_same_index_width(pq.read_table(root / "many.parquet")))


MEASURE = OWN_PEAK + """
import json, sys
import pyarrow, tether
client = tether.connect(sys.argv[1])
reset_peak()
before = peak_mb()
rows = batches = 0
for batch in client.read_batches("big", codec="zstd"):
    rows += batch.num_rows
    batches += 1
print(json.dumps({"rows": rows, "batches": batches, "grew_mb": peak_mb() - before}))
"""


def test_read_batches_holds_a_chunk_not_the_table(tmp_path: Path, serve) -> None:
    """A 256 MB table (more than a loader's default window of 8 x 4 MB shards)
    read in a fresh process: its peak memory grows by a few chunks, not the table."""
    rows = 4_000_000
    rng = np.random.default_rng(1)
    table = pa.table({f"c{i}": rng.random(rows) for i in range(8)})
    pq.write_table(table, tmp_path / "big.parquet", row_group_size=500_000,
                   compression="none")
    del table
    daemon = serve(tmp_path / "big.parquet")
    done = subprocess.run([sys.executable, "-c", MEASURE, daemon.url], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.splitlines()[-1])
    assert figures["rows"] == rows and figures["batches"] >= 64
    # the table is 256 MB; the growth (89 MB here) is gRPC's window and pyarrow's pool,
    # the same for any table's size
    assert figures["grew_mb"] < 150, figures
