"""Each codec setting, auto's included, streams a dataset exactly over a slow link."""

from __future__ import annotations

from pathlib import Path

import pytest

import tether
from tether.bench.link import Link, ShapedProxy

from ..conftest import collect
from ..unit.test_codec_choice import _dataset


@pytest.mark.parametrize("codec", ["auto", "zstd:19:noshuffle"])
def test_a_stream_over_a_slow_link_round_trips_exactly(serve, tmp_path: Path,
                                                        codec: str) -> None:
    expected = _dataset(tmp_path / "data" / "train")
    daemon = serve(tmp_path / "data" / "train", args=("--insecure",))
    port = tether.parse_url(daemon.url).port
    with ShapedProxy(("127.0.0.1", port), Link("uplink", 20e6, 0.025)) as proxy:
        through = tether.parse_url(daemon.url).with_address("127.0.0.1", proxy.port)
        loader = tether.Loader(through, dataset="train", batch_size=500, codec=codec,
                               shard_bytes=1 << 20)
        _, columns = collect(loader)
        with tether.connect(daemon.url) as client:
            sent = client.status().bytes_sent
    for name, values in expected.items():
        assert columns[name].dtype == values.dtype
        assert columns[name].tobytes() == values.tobytes(), name
    # Compressed on the way: the tokens alone shrink over 4x.
    assert sent < sum(v.nbytes for v in expected.values()) / 2
