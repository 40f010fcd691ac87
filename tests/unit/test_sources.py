"""Each source format read directly: schema, lazy row ranges, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tether.daemon.prepare.catalog import Catalog
from tether.daemon.sources import discover
from tether.wire.errors import ColumnError, DatasetError, DatasetNotFound

from ..formats import write_all


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> tuple[Catalog, dict]:
    root = tmp_path_factory.mktemp("formats")
    expected = write_all(root / "data")
    return Catalog([root / "data"], root / "cache"), expected


def test_discovery_names_one_dataset_per_file_and_grouped_folder(catalog) -> None:
    cat, expected = catalog
    assert sorted(cat.names) == sorted(expected)


@pytest.mark.parametrize("start,stop", [(0, 1000), (0, 1), (299, 301), (333, 999), (950, 1000)])
def test_every_format_reads_any_row_range_exactly(catalog, start: int, stop: int) -> None:
    cat, expected = catalog
    for name, columns in expected.items():
        source = cat.get(name)
        assert source.num_rows == 1000, name
        chosen = source.select(list(columns))
        got = source.read(start, stop, chosen)
        for column, values in columns.items():
            assert got[column].dtype == values.dtype.newbyteorder("<"), (name, column)
            assert np.array_equal(got[column], values[start:stop]), (name, column)


def test_columns_describe_nd_tensors(catalog) -> None:
    cat, _ = catalog
    columns = cat.get("single").columns
    assert columns["img"].shape == (4, 5) and columns["img"].dtype == np.uint8
    assert columns["vec"].shape == (3,) and columns["vec"].dtype == np.float32
    assert columns["flag"].dtype == np.bool_


def test_unknown_dataset_and_column_name_what_exists(catalog) -> None:
    cat, _ = catalog
    with pytest.raises(DatasetNotFound, match="'trian' not found; served: .*single"):
        cat.get("trian")
    with pytest.raises(ColumnError, match="no column 'nope'; columns: id, x"):
        cat.get("single").select(["nope"])


def test_unsupported_column_is_named_and_projection_avoids_it(tmp_path: Path) -> None:
    pq.write_table(pa.table({"pairs": pa.array([[("a", 1)], []], pa.map_(pa.string(), pa.int64())),
                             "n": [1, 2],
                             "nested": pa.array([[[1]], [[2, 3]]])}), tmp_path / "mixed.parquet")
    source = Catalog([tmp_path / "mixed.parquet"], tmp_path / "cache").get("mixed")
    with pytest.raises(ColumnError, match="column 'pairs' .* cannot become a tensor .*from: n"):
        source.select([])
    with pytest.raises(ColumnError, match="'nested'.*not a list of numbers"):
        source.select(["nested"])
    assert source.read(0, 2, source.select(["n"]))["n"].tolist() == [1, 2]


def test_integer_nulls_are_refused_by_name_and_float_nulls_are_nan(tmp_path: Path) -> None:
    pq.write_table(pa.table({"v": [1.0, None, 3.0], "i": [1, None, 3]}),
                   tmp_path / "holes.parquet")
    source = Catalog([tmp_path / "holes.parquet"], tmp_path / "cache").get("holes")
    assert np.isnan(source.read(0, 3, source.select(["v"]))["v"]).tolist() == [
        False, True, False]
    with pytest.raises(ColumnError, match="column 'i' holds nulls.*fill_null=.*null_masks="):
        source.read(0, 3, source.select(["i"]))


def test_a_corrupt_file_spares_the_other_datasets(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "broken.parquet").write_bytes(b"PAR1 this is not parquet at all")
    np.save(tmp_path / "data" / "fine.npy", np.arange(5))
    cat = Catalog([tmp_path / "data"], tmp_path / "cache")
    assert cat.get("fine").num_rows == 5
    with pytest.raises(DatasetError, match="'broken' cannot be served: .*broken.parquet"):
        cat.get("broken")
    assert cat.info("broken").error.startswith("ArrowInvalid")  # what `tether ls` shows


def test_npy_columns_of_unequal_length_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "uneven"
    folder.mkdir()
    np.save(folder / "a.npy", np.arange(3))
    np.save(folder / "b.npy", np.arange(4))
    cat = Catalog([folder], tmp_path / "cache")
    with pytest.raises(DatasetError, match="differ in length"):
        cat.get("uneven")


def test_changed_files_are_reopened(tmp_path: Path) -> None:
    path = tmp_path / "grow.npy"
    np.save(path, np.arange(3))
    cat = Catalog([path], tmp_path / "cache")
    before = cat.get("grow").fingerprint
    np.save(path, np.arange(7))
    assert cat.get("grow").num_rows == 7
    assert cat.get("grow").fingerprint != before


def test_discover_rejects_unknown_file_types(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hi")
    with pytest.raises(ValueError, match="unsupported file type"):
        discover(path)
