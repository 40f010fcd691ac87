"""Bad requests get clear errors, and the daemon goes on serving the next one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tether

from ..conftest import collect


@pytest.fixture
def messy(tmp_path: Path, serve):
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "good.npy", np.arange(1000, dtype=np.int64))
    (data / "garbage.parquet").write_bytes(b"PAR1" + bytes(range(256)) * 4 + b"PAR1")
    pq.write_table(pa.table({"record": pa.array([[("a", 1)]] * 100,
                                                pa.map_(pa.string(), pa.int64())),
                             "n": np.arange(100)}), data / "mixed.parquet")
    # A file whose footer is fine but whose first data page header is destroyed:
    # the damage is found only when rows are read, mid-stream.
    pq.write_table(pa.table({"v": np.arange(5000, dtype=np.float64)}), data / "torn.parquet",
                   compression="none")
    torn = bytearray((data / "torn.parquet").read_bytes())
    torn[4:64] = b"\xff" * 60
    (data / "torn.parquet").write_bytes(bytes(torn))
    return serve(data)


def _still_serving(daemon) -> None:
    loader = tether.Loader(daemon.url, dataset="good", batch_size=100)
    assert np.array_equal(collect(loader)[1]["good"], np.arange(1000))
    with daemon.client() as client:
        assert "good" in {d.name for d in client.datasets()}


def test_unknown_dataset(messy) -> None:
    with pytest.raises(tether.DatasetNotFound, match="'goood' not found; served: .*good"):
        iter(tether.Loader(messy.url, dataset="goood", batch_size=10))
    _still_serving(messy)


def test_unknown_column(messy) -> None:
    with pytest.raises(tether.ColumnError, match="no column 'label'; columns: record, n"):
        iter(tether.Loader(messy.url, dataset="mixed", batch_size=10, columns=["label"]))
    _still_serving(messy)


def test_unsupported_dtype_names_the_column_and_the_way_out(messy) -> None:
    with pytest.raises(tether.ColumnError, match="column 'record' .*cannot become a tensor.*: n"):
        iter(tether.Loader(messy.url, dataset="mixed", batch_size=10))
    got = collect(tether.Loader(messy.url, dataset="mixed", batch_size=10, columns=["n"]))[1]
    assert np.array_equal(got["n"], np.arange(100))
    _still_serving(messy)


def test_corrupt_file_found_at_start(messy) -> None:
    with pytest.raises(tether.DatasetError, match="'garbage' cannot be served.*garbage.parquet"):
        iter(tether.Loader(messy.url, dataset="garbage", batch_size=10))
    with messy.client() as client:
        listed = {d.name: d for d in client.datasets()}
    assert listed["garbage"].error
    _still_serving(messy)


def test_corrupt_file_found_mid_read(messy) -> None:
    with pytest.raises(tether.DataCorrupted,
                       match="'torn': reading 5000 rows between 0 and 4999 failed"):
        collect(tether.Loader(messy.url, dataset="torn", batch_size=10))
    _still_serving(messy)


def test_bad_arguments_are_refused_before_connecting() -> None:
    for kwargs, message in [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 1, "process_index": 3, "process_count": 3}, "process_index"),
        ({"batch_size": 1, "codec": "gzip"}, "unknown codec"),
        ({"batch_size": 1, "num_epochs": 0}, "num_epochs"),
    ]:
        with pytest.raises(tether.RequestError, match=message):
            tether.Loader("tether://127.0.0.1:1/", dataset="d", **kwargs)
    with pytest.raises(tether.RequestError, match="not a Tether URL"):
        tether.Loader("http://127.0.0.1:1/", dataset="d", batch_size=1)


def test_unreachable_daemon_is_a_clear_error() -> None:
    with pytest.raises(tether.ConnectionFailed, match="is `tether serve` running"):
        tether.connect("tether://127.0.0.1:9/?tls=off", timeout=1).datasets()


def test_loader_without_a_daemon_gives_up_within_its_connect_timeout() -> None:
    loader = tether.Loader("tether://127.0.0.1:9/?tls=off", dataset="d", batch_size=1,
                           retry=tether.RetryPolicy(connect_timeout=1.0))
    with pytest.raises(tether.ConnectionFailed,
                       match="gave up connecting after .* attempts.*is `tether serve` running"):
        iter(loader)
