"""Every common Arrow type, through a real source, as the stream would send it
(tether.daemon.sources.arrow_types has the table); in Parquet and Arrow IPC."""

from __future__ import annotations

import datetime
import decimal
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from tether.daemon.prepare.catalog import Catalog
from tether.daemon.stream.columns import Vocabularies, stream_columns
from tether.wire.errors import ColumnError, RequestError
from tether.wire.ragged import IMAGE, Ragged
from tether.wire.spec import StreamSpec

ROWS = 6
UTC = datetime.timezone.utc


def _table() -> pa.Table:
    paris = datetime.timezone(datetime.timedelta(hours=1))
    return pa.table({
        "id": pa.array(range(ROWS), pa.int64()),
        "price": pa.array([decimal.Decimal("1.25"), None, decimal.Decimal("-3.50"),
                           decimal.Decimal("0.01"), decimal.Decimal("99999.99"),
                           decimal.Decimal("2")], pa.decimal128(7, 2)),
        "at": pa.array([datetime.datetime(2024, 1, 1, 12, tzinfo=paris)] * ROWS,
                       pa.timestamp("ms", tz="Europe/Paris")),
        "clock": pa.array([datetime.time(1, 2, 3)] * ROWS, pa.time32("s")),
        "took": pa.array([datetime.timedelta(seconds=s) for s in range(ROWS)],
                         pa.duration("us")),
        "born": pa.array([datetime.date(2000, 1, d + 1) for d in range(ROWS)], pa.date64()),
        "st": pa.array([{"a": i, "b": {"c": float(i)}} for i in range(ROWS)]),
        "tags": pa.array([["x", "é"], None, [], ["y"], ["z", "z"], ["w"]],
                         pa.list_(pa.string())),
        "image": pa.array([{"bytes": b"\x89PNG" + bytes([i]), "path": f"{i}.png"}
                           for i in range(ROWS)]),
        "pairs": pa.array([[("k", 1)]] * ROWS, pa.map_(pa.string(), pa.int64())),
    })


@pytest.fixture(params=["parquet", "feather"])
def source(request, tmp_path: Path):
    table = _table()
    if request.param == "parquet":
        pq.write_table(table, tmp_path / "all.parquet", row_group_size=2)
    else:
        feather.write_feather(table, tmp_path / "all.feather")
    return Catalog([tmp_path / f"all.{request.param}"], tmp_path / "cache").get("all")


def _rows(source, **request):
    spec = StreamSpec(dataset="all", batch_size=2, **request)
    columns = stream_columns(source, spec, Vocabularies())
    return {c.name: c for c in columns}, source.take(np.arange(source.num_rows)[::-1], columns)


def test_each_type_is_served_as_its_table_says(source) -> None:
    assert "column 'pairs'" in str(pytest.raises(ColumnError, source.select, []).value)
    columns, rows = _rows(source, columns=("id", "price", "at", "clock", "took", "born", "st.a",
                                           "st.b.c", "tags", "image", "image.path"))
    assert rows["id"].tolist() == list(range(ROWS))[::-1]
    assert np.isnan(rows["price"][4]) and rows["price"][[0, 1, 5]].tolist() == [
        2.0, 99999.99, 1.25]  # (rows in reverse)
    assert rows["at"].dtype == np.dtype("<M8[ms]")  # UTC values, the zone in the column
    assert rows["at"][0] == np.datetime64("2024-01-01T11:00:00", "ms")
    assert columns["at"].timezone == "Europe/Paris"
    # since midnight, in the source's unit (Parquet keeps a time32[s] in milliseconds)
    assert rows["clock"].dtype.kind == "m" and rows["clock"][0] == np.timedelta64(3723, "s")
    assert rows["took"].dtype == np.dtype("<m8[us]")
    assert rows["took"].tolist() == [datetime.timedelta(seconds=s) for s in range(ROWS)][::-1]
    assert rows["born"].dtype == np.dtype("<M8[D]")  # date64's milliseconds, as days
    assert rows["born"][-1] == np.datetime64("2000-01-01")
    assert rows["st.a"].tolist() == list(range(ROWS))[::-1]
    assert rows["st.b.c"].dtype == np.float64
    tags = rows["tags"]
    assert isinstance(tags, Ragged)
    assert [json.loads(t) if t else None for t in tags.to_numpy()] == [
        ["w"], ["z", "z"], ["y"], [], None, ["x", "é"]]
    assert columns["tags_valid"].valid_of == "tags"  # its null, for the loader's None
    assert rows["tags_valid"].tolist() == [True, True, True, True, False, True]
    assert columns["image"].kind == IMAGE and rows["image"][0] == b"\x89PNG\x05"
    assert rows["image.path"].to_numpy().tolist()[-1] == "0.png"


def test_dictionaries_of_every_row_group_share_one_numbering(tmp_path: Path) -> None:
    """pandas writes one dictionary a row group: codes must not restart in each."""
    parts = [pa.array(values).dictionary_encode() for values in
             (["b", "a", "b"], ["c", "a", None], ["d", "d", "b"])]
    tables = [pa.table({"plan": part}) for part in parts]
    with pq.ParquetWriter(tmp_path / "d.parquet", tables[0].schema) as writer:
        for table in tables:
            writer.write_table(table)
    source = Catalog([tmp_path / "d.parquet"], tmp_path / "cache").get("d")
    columns, rows = _rows(source)
    vocabulary = columns["plan"].categories
    assert vocabulary == ("b", "a", "c", "d")  # in order of first appearance
    decoded = [vocabulary[c] if c >= 0 else None for c in rows["plan"][::-1]]
    assert decoded == ["b", "a", "b", "c", "a", None, "d", "d", "b"]


def test_categories_number_a_text_column_by_its_sorted_values(tmp_path: Path) -> None:
    pq.write_table(pa.table({"city": ["Oslo", None, "Lima", "Oslo", "Pune", "Lima"]}),
                   tmp_path / "c.parquet", row_group_size=2)
    source = Catalog([tmp_path / "c.parquet"], tmp_path / "cache").get("c")
    columns, rows = _rows(source, categories=("city",))
    assert columns["city"].categories == ("Lima", "Oslo", "Pune")
    assert rows["city"].tolist() == [0, 2, 1, 0, -1, 1]  # (rows in reverse)
    with pytest.raises(ColumnError, match="categories=\\['id'\\]: a text column"):
        pq.write_table(pa.table({"id": [1, 2]}), tmp_path / "i.parquet")
        _rows(Catalog([tmp_path / "i.parquet"], tmp_path / "cache").get("i"),
              categories=("id",))


def test_options_that_name_no_column_or_the_wrong_kind_are_refused(source) -> None:
    with pytest.raises(ColumnError, match="fill_null names \\['nope'\\], not columns"):
        _rows(source, columns=("id",), fill_null=(("nope", 1),))
    with pytest.raises(ColumnError, match="images=\\['id'\\]: only a binary column"):
        _rows(source, columns=("id",), images=("id",))
    with pytest.raises(ColumnError, match="fill_null value 'x' cannot stand in column 'id'"):
        _rows(source, columns=("id",), fill_null=(("id", "x"),))
    with pytest.raises(RequestError, match="image_size=\\(8, 8\\) but no column streamed"):
        _rows(source, columns=("id",), image_size=(8, 8))


# --- found by a review of this module (each failed before its fix) ---------------


def _source_of(tmp_path: Path, table: pa.Table, name: str = "t"):
    feather.write_feather(table, tmp_path / f"{name}.feather")
    return Catalog([tmp_path / f"{name}.feather"], tmp_path / "cache").get(name)


def test_a_zoned_timestamp_with_gaps_masks_and_fills(tmp_path: Path) -> None:
    when = pa.array([datetime.datetime(2024, 1, 1, tzinfo=UTC), None],
                    pa.timestamp("us", tz="Europe/Paris"))
    source = _source_of(tmp_path, pa.table({"when": when}))
    _, masked = _rows(source, null_masks=("when",))
    assert masked["when"][0] == np.datetime64(0, "us")  # the epoch; reversed rows: gap first
    assert masked["when_valid"].tolist() == [False, True]
    _, filled = _rows(source, fill_null=(("when", "2000-01-01"),))
    assert filled["when"][0] == np.datetime64("2000-01-01T00:00:00", "us")  # naive text is UTC


def test_view_text_with_nulls_and_a_text_fill_with_a_mask(tmp_path: Path) -> None:
    if not hasattr(pa, "string_view"):
        pytest.skip("pyarrow without string_view")
    source = _source_of(tmp_path, pa.table({"s": pa.array(["a", None], pa.string_view())}))
    _, rows = _rows(source)
    assert rows["s"].to_numpy().tolist() == ["", "a"] and rows["s_valid"].tolist() == [
        False, True]


def test_fills_that_would_be_lost_or_ignored_are_refused_at_open(tmp_path: Path) -> None:
    table = pa.table({"n": pa.array([1, None]), "plan": pa.array(["a", None]).dictionary_encode(),
                      "v": pa.array([[1, 2], None], pa.list_(pa.int64(), 2))})
    source = _source_of(tmp_path, table)
    with pytest.raises(ColumnError, match="1.5 cannot stand in column 'n'"):
        _rows(source, columns=("n",), fill_null=(("n", 1.5),))  # not truncated to 1
    with pytest.raises(ColumnError, match="text stands only in text"):
        _rows(source, columns=("n",), fill_null=(("n", "5"),))
    with pytest.raises(ColumnError, match="fill_null cannot fill 'plan'"):
        _rows(source, columns=("plan",), fill_null=(("plan", "b"),))
    with pytest.raises(ColumnError, match="'v' of 't' holds 1 null rows"):
        _rows(source, columns=("v",))


def test_a_date64_with_a_time_of_day_is_its_day(tmp_path: Path) -> None:
    day = 86_400_000
    source = _source_of(tmp_path, pa.table({"d": pa.array([day + 5, 2 * day], pa.date64())}))
    _, rows = _rows(source)
    assert rows["d"].tolist()[::-1] == [datetime.date(1970, 1, 2), datetime.date(1970, 1, 3)]


def test_an_empty_hdf5_dataset_leaves_the_file_served(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "e.h5", "w") as f:
        f["x"] = np.arange(4)
        f["nothing"] = h5py.Empty("f")
    source = Catalog([tmp_path / "e.h5"], tmp_path / "cache").get("e")
    assert list(source.columns) == ["x"]
