"""pytest-benchmark micro-benchmarks of the hot paths, each beside its baseline.

    python -m pytest bench/micro_benchmarks.py --benchmark-columns=mean,ops

Compare within one run: byte-shuffle against numpy's transpose, each codec's
encode and decode against `none`, batching views against copies.
"""

from __future__ import annotations

import numpy as np
import pytest

from tether.pipeline.batcher import Batcher
from tether.pipeline.decoder import Shard
from tether.wire import framing, tensors
from tether.wire.codecs import byteshuffle
from tether.wire.v1 import tether_pb2 as pb

MIB4 = 4 << 20
DATA = {
    "floats": np.random.default_rng(0).standard_normal(MIB4 // 4).astype(np.float32),
    "tokens": np.minimum(np.random.default_rng(1).zipf(1.2, MIB4 // 8) - 1, 49_999)
    .astype(np.int64),
}
CASES = [(d, c, s) for d in DATA for c in ("none", "lz4", "zstd") for s in (False, True)
         if not (c == "none" and s)]


@pytest.mark.parametrize("data,codec,shuffle", CASES)
def test_encode(benchmark, data: str, codec: str, shuffle: bool) -> None:
    benchmark.extra_info["bytes"] = DATA[data].nbytes
    benchmark(tensors.encode, data, DATA[data], codec, shuffle, True, "crc32c")


@pytest.mark.parametrize("data,codec,shuffle", CASES)
def test_decode(benchmark, data: str, codec: str, shuffle: bool) -> None:
    encoded = tensors.encode(data, DATA[data], codec, shuffle, True, "crc32c")
    decoded = benchmark(tensors.decode, encoded.header, encoded.data)
    assert np.array_equal(decoded, DATA[data])


def _transpose_unshuffle(data: memoryview, itemsize: int) -> np.ndarray:
    planes = np.frombuffer(data, dtype=np.uint8).reshape(itemsize, -1)
    return np.ascontiguousarray(planes.T).reshape(-1)


def test_unshuffle_by_planes(benchmark) -> None:
    shuffled = memoryview(byteshuffle.shuffle(memoryview(DATA["floats"]).cast("B"), 4))
    benchmark(byteshuffle.unshuffle, shuffled, 4)


def test_unshuffle_baseline_numpy_transpose(benchmark) -> None:
    shuffled = memoryview(byteshuffle.shuffle(memoryview(DATA["floats"]).cast("B"), 4))
    out = benchmark(_transpose_unshuffle, shuffled, 4)
    assert np.array_equal(out, np.frombuffer(DATA["floats"].tobytes(), np.uint8))


def test_shuffle_by_planes(benchmark) -> None:
    benchmark(byteshuffle.shuffle, memoryview(DATA["floats"]).cast("B"), 4)


def test_frame_encode_and_decode(benchmark) -> None:
    encoded = tensors.encode("x", DATA["floats"], "none", False, False, "crc32c")
    header = pb.ShardHeader(num_rows=len(DATA["floats"]), tensors=[encoded.header])

    def round_trip() -> framing.Frame:
        return framing.decode(framing.encode_shard(header, [encoded.data]))

    assert benchmark(round_trip).payload.nbytes == DATA["floats"].nbytes


@pytest.mark.parametrize("shard_rows", [4096, 1000], ids=["views", "spanning-copies"])
def test_rebatch(benchmark, shard_rows: int) -> None:
    x = DATA["floats"].reshape(-1, 256)
    shards = [Shard(0, i, i, len(x[s:s + shard_rows]), {"x": x[s:s + shard_rows]})
              for i, s in enumerate(range(0, len(x), shard_rows))]

    def batches() -> int:
        return sum(len(b["x"]) for b in Batcher(shards, 512, False, lambda s: None))

    assert benchmark(batches) == len(x)
