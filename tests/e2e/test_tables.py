"""Tables as people keep them: a pandas DataFrame with gaps, dates and
categories, saved with to_parquet and to_csv, is delivered column for column,
or refused at open naming every column that needs an option; with the
options, values equal pandas' own (fillna, isna, cat.codes) row for row,
shuffled and resumed."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tether

from ..conftest import DaemonProcess, collect

pd = pytest.importorskip("pandas")

ROWS = 3_000
FILLS = {"age": -1, "when": "2000-01-01", "ok": False, "day": "1999-12-31"}


def people(rows: int = ROWS) -> pd.DataFrame:
    """Every column kind a pandas user keeps, each with gaps."""
    rng = np.random.default_rng(7)
    gap = lambda: rng.random(rows) < 0.1  # noqa: E731
    age = pd.array(rng.integers(18, 90, rows), dtype="Int64")
    age[gap()] = pd.NA
    score = rng.standard_normal(rows)
    score[gap()] = np.nan
    city = np.array(rng.choice(["Paris", "Oslo", "Lima", "Pune"], rows), dtype=object)
    city[gap()] = None
    when = pd.Series(pd.to_datetime("2024-01-01") + pd.to_timedelta(
        rng.integers(0, 10**6, rows), unit="s"))
    when[gap()] = pd.NaT
    plan = pd.Categorical(rng.choice(["pro", "free", "team"], rows),
                          categories=["free", "team", "pro", "gold"])
    plan[gap()] = np.nan
    ok = pd.array(rng.random(rows) < 0.5, dtype="boolean")
    ok[gap()] = pd.NA
    day = pd.Series([datetime.date(2020, 1, 1) + datetime.timedelta(days=int(d))
                     for d in rng.integers(0, 1000, rows)], dtype=object)
    day[gap()] = None
    return pd.DataFrame({"id": np.arange(rows), "age": age, "score": score, "city": city,
                         "when": when, "plan": plan, "ok": ok, "day": day})


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory):
    """The same DataFrame as Parquet and as CSV, served by one daemon (read only)."""
    root = tmp_path_factory.mktemp("tables")
    frame = people()
    frame.to_parquet(root / "people.parquet", row_group_size=500)  # several dictionaries
    frame.to_csv(root / "people_csv.csv")  # with pandas' unnamed index in front
    with DaemonProcess([root / "people.parquet", root / "people_csv.csv"],
                       root / "state") as daemon:
        yield daemon, frame, root
        assert daemon.stop() == 0


def _by_id(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    order = np.argsort(columns["id"])
    return {name: values[order] for name, values in columns.items()}


@pytest.mark.parametrize("dataset", ["people", "people_csv"])
def test_default_options_refuse_naming_every_column_and_both_options(tables,
                                                                      dataset: str) -> None:
    daemon, _, _ = tables
    with pytest.raises(tether.ColumnError) as refused:
        next(iter(tether.Loader(daemon.url, dataset=dataset, batch_size=100)))
    message = str(refused.value)
    for column in ("'age'", "'when'", "'ok'", "'day'"):
        assert column in message
    for column in ("'score'", "'city'", "'plan'", "'id'"):
        assert f"{column} (" not in message  # floats, text and categories need nothing
    assert "fill_null=" in message and "null_masks=" in message


def _expected(frame: pd.DataFrame, csv: bool) -> dict[str, np.ndarray]:
    filled = frame.fillna({"age": -1, "ok": False})
    when = frame["when"].fillna(pd.Timestamp("2000-01-01"))
    day = pd.to_datetime(frame["day"].fillna(datetime.date(1999, 12, 31)))
    plan = frame["plan"]
    if csv:  # a CSV keeps text: categories= numbers its sorted values
        plan = plan.astype(str).replace("nan", np.nan).astype("category")
    return {
        "id": frame["id"].to_numpy(), "age": filled["age"].to_numpy(dtype=np.int64),
        "age_valid": frame["age"].notna().to_numpy(), "score": frame["score"].to_numpy(),
        "city": np.array([None if pd.isna(c) else c for c in frame["city"]], dtype=object),
        "city_valid": frame["city"].notna().to_numpy(),
        "when": when.to_numpy().astype("datetime64[us]"), "ok": filled["ok"].to_numpy(bool),
        "plan": plan.cat.codes.to_numpy(np.int32), "day": day.to_numpy().astype("<M8[D]"),
        "plan_categories": list(plan.cat.categories),
    }


@pytest.mark.parametrize("dataset", ["people", "people_csv"])
def test_with_the_options_values_equal_pandas_own_shuffled_and_resumed(tables,
                                                                      dataset: str) -> None:
    daemon, frame, _ = tables
    csv = dataset.endswith("_csv")
    options = dict(dataset=dataset, batch_size=128, shuffle=True, seed=11,
                   fill_null=FILLS, null_masks=["age", "city"],
                   categories=["plan"] if csv else [])
    first = tether.Loader(daemon.url, **options)
    with first:
        batches = iter(first)
        head = [next(batches) for _ in range(7)]
        state = first.state_dict()
        vocabulary = first.categories["plan"]
    second = tether.Loader(daemon.url, **options)
    second.load_state_dict(state)
    tail, _ = collect(second)
    got = _by_id({name: np.concatenate([b[name] for b in [*head, *tail]]) for name in head[0]})
    want = _expected(frame, csv)
    assert sorted(got) == sorted(k for k in want if k != "plan_categories")
    assert np.array_equal(got["id"], np.arange(ROWS))  # every row once, across the resume
    for name in ("age", "age_valid", "city_valid", "ok", "plan", "day"):
        assert got[name].dtype == want[name].dtype, name
        assert np.array_equal(got[name], want[name]), name
    # the source's unit: what this pandas wrote (pandas 3 microseconds, 2.2 nanoseconds,
    # as Colab's stack has it), and a CSV is read in seconds
    written = np.dtype(f"<M8[{np.datetime_data(frame['when'].dtype)[0]}]")
    assert got["when"].dtype == (np.dtype("<M8[s]") if csv else written)
    assert np.array_equal(got["when"].astype("<M8[us]"), want["when"])
    assert np.array_equal(got["score"], want["score"], equal_nan=True)
    assert got["city"].tolist() == want["city"].tolist()
    assert vocabulary == want["plan_categories"]


def test_tether_ls_counts_nulls_and_categories_and_lists_the_index_left_out(tables) -> None:
    daemon, frame, _ = tables
    with tether.connect(daemon.url) as client:
        infos = {d.name: d for d in client.datasets()}
    parquet, csv = infos["people"], infos["people_csv"]
    nulls = {c.name: c.null_count for c in parquet.columns}
    for name in ("age", "score", "city", "when", "plan", "ok", "day"):
        assert nulls[name] == int(frame[name].isna().sum()), name
    plan = next(c for c in parquet.columns if c.name == "plan")
    assert plan.logical == "category" and plan.category_count == 4
    assert [c.name for c in csv.columns][0] == "id"  # the unnamed index is not a column
    assert any("pandas' index" in line for line in csv.left_out)


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


def _typed_table() -> pa.Table:
    from ..unit.test_arrow_types import _table

    return _table().drop_columns(["pairs", "image"])  # (a map is unsupported)


def test_every_type_crosses_the_wire_as_the_loader_delivers_it(serve, tmp_path: Path) -> None:
    pq.write_table(_typed_table(), tmp_path / "typed.parquet", row_group_size=2)
    daemon = serve(tmp_path / "typed.parquet")
    _, got = collect(tether.Loader(daemon.url, dataset="typed", batch_size=4, shuffle=True,
                                   seed=2))
    order = np.argsort(got["id"])
    got = {name: values[order] for name, values in got.items()}
    assert sorted(got) == sorted(["id", "price", "at", "clock", "took", "born", "st.a",
                                  "st.b.c", "tags"])  # no mask columns left over
    assert got["at"].dtype == np.dtype("<M8[ms]") and got["born"].dtype == np.dtype("<M8[D]")
    assert got["took"].dtype == np.dtype("<m8[us]")
    assert got["born"].tolist() == [datetime.date(2000, 1, d + 1) for d in range(6)]
    assert got["tags"].tolist() == [["x", "é"], None, [], ["y"], ["z", "z"], ["w"]]
    assert got["st.b.c"].tolist() == [float(i) for i in range(6)]


@pytest.mark.jax
def test_to_jax_keeps_dates_on_the_host_and_says_what_it_changes(serve, tmp_path: Path,
                                                                 x64_off) -> None:
    pytest.importorskip("jax")
    pq.write_table(pa.table({"when": pa.array(np.arange(8).astype("M8[D]")),
                             "x": np.arange(8, dtype=np.float64), "name": list("abcdefgh")}),
                   tmp_path / "d.parquet")
    daemon = serve(tmp_path / "d.parquet")
    with tether.Loader(daemon.url, dataset="d", batch_size=4) as loader, \
            pytest.warns(UserWarning) as said:
        batches = list(loader.to_jax())
    assert isinstance(batches[0]["when"], np.ndarray) and batches[0]["when"].dtype.kind == "M"
    assert isinstance(batches[0]["name"], np.ndarray)
    assert str(batches[0]["x"].dtype) == "float32"
    messages = [str(w.message) for w in said]
    assert len(messages) == 2  # once each, not once a batch
    assert any("['name', 'when'] stay numpy arrays" in m for m in messages)
    assert any("['x'] are float64" in m for m in messages)
