"""Filter pushdown through the real daemon: the rows pandas would select, every one
once, shuffled, split among processes, resumed; refused with a bad expression."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import tether
from tether.wire.errors import RequestError

from ..conftest import state_after

pd = pytest.importorskip("pandas")

ROWS = 5000


def _table() -> pa.Table:
    rng = np.random.default_rng(0)
    score = rng.random(ROWS)
    nullable = pa.array([None if i % 7 == 0 else float(v) for i, v in enumerate(score * 20)])
    return pa.table({
        "id": np.arange(ROWS, dtype=np.int64),
        "column_name": rng.integers(0, 20, ROWS),
        "label": rng.integers(0, 6, ROWS),
        "score": score,
        "word": [["cat", "dog", "eel", ""][i % 4] for i in range(ROWS)],
        "maybe": nullable,
    })


@pytest.fixture(scope="module")
def filtered(tmp_path_factory):
    from ..conftest import DaemonProcess

    root = tmp_path_factory.mktemp("e2e-filters")
    table = _table()
    data = root / "data"
    data.mkdir()
    pq.write_table(table, data / "train.parquet", row_group_size=400)
    pacsv.write_csv(table.drop_columns(["maybe"]), data / "plain.csv")
    daemon = DaemonProcess([data], root / "state")
    yield daemon, table.to_pandas(), data
    assert daemon.stop() == 0


def _ids(loader: tether.Loader) -> list[int]:
    return [int(i) for batch in loader for i in batch["id"]]


def test_the_seed_example_equals_pandas(filtered) -> None:
    daemon, _, data = filtered
    df = pd.read_csv(data / "plain.csv")  # an empty field is a null, for both
    with tether.Loader(daemon.url, dataset="plain", batch_size=64,
                       filter="column_name > 10") as loader:
        got = pd.DataFrame({k: np.concatenate(v) for k, v in _columns(loader).items()})
    want = df[df.column_name > 10].reset_index(drop=True)
    pd.testing.assert_frame_equal(got[want.columns], want, check_dtype=False)


def _columns(loader: tether.Loader) -> dict[str, list]:
    out: dict[str, list] = {}
    for batch in loader:
        for name, values in batch.items():
            out.setdefault(name, []).append(values)
    return out


@pytest.mark.parametrize(("text", "select"), [
    ("label >= 3 and score < 0.5", lambda df: (df.label >= 3) & (df.score < 0.5)),
    ("word in ('cat', 'eel') or label == 0", lambda df: df.word.isin(["cat", "eel"])
     | (df.label == 0)),
    ("maybe > 10", lambda df: df.maybe > 10),  # nulls are not selected, as in pandas here
    ("maybe is null", lambda df: df.maybe.isna()),
    ("not (word == '') and (score * 10) % 3 < 1", lambda df: (df.word != "")
     & ((df.score * 10) % 3 < 1)),
])
def test_shuffled_filters_select_what_pandas_selects_each_row_once(filtered, text,
                                                                   select) -> None:
    daemon, df, _ = filtered
    want = sorted(df.id[select(df)].tolist())
    with tether.Loader(daemon.url, dataset="train", batch_size=32, shuffle=True, seed=3,
                       filter=text, columns=["id"], drop_last=False) as loader:
        got = _ids(loader)
    assert sorted(got) == want and got != want


def test_processes_split_the_filtered_rows_equally(filtered) -> None:
    daemon, df, _ = filtered
    want = set(df.id[(df.label >= 2)].tolist())
    parts = []
    for index in range(3):
        with tether.Loader(daemon.url, dataset="train", batch_size=16, shuffle=True, seed=1,
                           filter="label >= 2", columns=["id"], process_index=index,
                           process_count=3) as loader:
            parts.append(_ids(loader))
    assert len({len(p) for p in parts}) == 1  # equal batches on every process
    seen = [i for p in parts for i in p]
    assert len(seen) == len(set(seen)) and set(seen) <= want
    assert len(want) - len(seen) < 3 * 16  # less than one global batch dropped


def test_a_filtered_stream_resumes_exactly_and_refuses_another_filter(filtered) -> None:
    daemon, _, _ = filtered
    options = dict(dataset="train", batch_size=32, shuffle=True, seed=9, columns=["id"],
                   filter="score > 0.25", num_epochs=2)
    with tether.Loader(daemon.url, **options) as loader:
        whole = [b["id"].tolist() for b in loader]
    state = state_after(daemon.url, 50, **options)
    with tether.Loader(daemon.url, **options) as resumed:
        resumed.load_state_dict(state)
        assert [b["id"].tolist() for b in resumed] == whole[50:]
    other = {**options, "filter": "score > 0.3"}
    with tether.Loader(daemon.url, **other) as loader, \
            pytest.raises(RequestError, match="another stream.*filter"):
        loader.load_state_dict(state)


def test_bad_filters_are_refused_with_the_position_or_the_columns(filtered) -> None:
    daemon, _, _ = filtered
    with pytest.raises(RequestError, match="position 9: expected a value"):
        tether.Loader(daemon.url, dataset="train", batch_size=8, filter="label >= ")
    loader = tether.Loader(daemon.url, dataset="train", batch_size=8, filter="lable > 3")
    with pytest.raises(RequestError, match="no column 'lable'; columns: id, column_name"):
        iter(loader)
    loader = tether.Loader(daemon.url, dataset="train", batch_size=8, filter="label > 99")
    with pytest.raises(RequestError, match="selects no row"):
        iter(loader)


def test_ls_counts_the_matching_rows(filtered) -> None:
    daemon, df, _ = filtered
    out = subprocess.run([sys.executable, "-m", "tether.cli", "ls", daemon.url, "train",
                          "--filter", "label >= 3"], capture_output=True, text=True, check=True)
    assert f"{int((df.label >= 3).sum()):,} of {ROWS:,} rows match" in out.stdout
