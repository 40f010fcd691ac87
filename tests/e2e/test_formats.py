"""Every source format, served by the real daemon, arrives bit-exactly in the real loader."""

from __future__ import annotations

import numpy as np
import pytest

import tether

from ..conftest import collect
from ..formats import write_all


@pytest.fixture(scope="module")
def formats_daemon(tmp_path_factory):
    from ..conftest import DaemonProcess

    root = tmp_path_factory.mktemp("e2e-formats")
    expected = write_all(root / "data")
    daemon = DaemonProcess([root / "data"], root / "state")
    yield daemon, expected
    assert daemon.stop() == 0


@pytest.mark.parametrize("codec", ["auto", "none", "lz4", "zstd"])
def test_every_format_round_trips_bit_exactly(formats_daemon, codec: str) -> None:
    daemon, expected = formats_daemon
    for name, columns in expected.items():
        loader = tether.Loader(daemon.url, dataset=name, batch_size=64, codec=codec,
                               shard_bytes=4096)
        batches, got = collect(loader)
        assert [len(b["id" if "id" in b else name]) for b in batches][:-1] == [64] * 15
        assert set(got) == set(columns), name
        for column, values in columns.items():
            assert got[column].dtype == values.dtype, (name, column)
            assert got[column].tobytes() == np.ascontiguousarray(values).tobytes(), (name, column)


def test_ls_describes_every_dataset(formats_daemon) -> None:
    daemon, expected = formats_daemon
    with daemon.client() as client:
        infos = {d.name: d for d in client.datasets()}
    assert set(infos) == set(expected)
    img = next(c for c in infos["single"].columns if c.name == "img")
    assert (img.dtype, list(img.shape)) == ("|u1", [4, 5])
    assert all(info.num_rows == 1000 for info in infos.values())
