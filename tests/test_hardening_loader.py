"""A malicious daemon against the real loader, forged loader states, and forged
stream requests against the real daemon (issue 9, items 4, 11 and 12).

The malicious daemon is a small gRPC server in this process that answers
`Stream` with frames built by tether.wire.framing; the loader under test runs
in a subprocess when its peak memory is measured (ru_maxrss).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

import tether
from tether.wire import framing, rpc, tensors
from tether.wire.errors import DataCorrupted, ProtocolError
from tether.wire.v1 import tether_pb2 as pb

MiB = 1 << 20

# --- a malicious daemon ------------------------------------------------------

Script = Callable[[pb.OpenStream, Iterator[pb.StreamRequest]], Iterator[bytes]]


class FakeDaemon:
    """Serves `Stream` (plain text, any token) with the frames `script` yields."""

    def __init__(self, script: Script) -> None:
        self.sent = 0
        self.opened: list[pb.OpenStream] = []

        def stream(requests, context) -> Iterator[bytes]:
            first = next(requests)
            self.opened.append(first.open)
            # Drain credits and acks in the background: a flood ignores them.
            threading.Thread(target=self._drain, args=(requests,), daemon=True).start()
            for frame in script(first.open, requests):
                yield frame
                self.sent += 1

        handlers = {rpc.STREAM: grpc.stream_stream_rpc_method_handler(
            stream, request_deserializer=pb.StreamRequest.FromString, response_serializer=None)}
        self.server = grpc.server(ThreadPoolExecutor(4), options=rpc.SERVER_OPTIONS)
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(rpc.SERVICE_NAME, handlers),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    @staticmethod
    def _drain(requests: Iterator[pb.StreamRequest]) -> None:
        try:
            for _ in requests:
                pass
        except grpc.RpcError:  # the call ended
            pass

    @property
    def url(self) -> str:
        return f"tether://127.0.0.1:{self.port}/?tls=off&token=x"

    def stop(self) -> None:
        self.server.stop(0)


@pytest.fixture
def fake_daemon():
    started: list[FakeDaemon] = []

    def start(script: Script) -> FakeDaemon:
        started.append(FakeDaemon(script))
        return started[-1]

    yield start
    for daemon in started:
        daemon.stop()


def plan_frame(rows: int, shard_rows: int, columns: dict[str, tuple[str, tuple[int, ...]]],
               ) -> bytes:
    plan = pb.StreamPlan(
        fingerprint="fake", num_rows=rows, shard_rows=shard_rows,
        shards_per_epoch=-(-rows // shard_rows), batches_per_epoch=rows, seed=0,
        columns=[pb.ColumnInfo(name=n, dtype=d, shape=s) for n, (d, s) in columns.items()],
        layout=pb.Layout(chunk_rows=[rows]))
    return framing.encode_plan(plan)


def shard_header(epoch: int, sequence: int, headers: list[pb.TensorHeader], num_rows: int,
                 last: bool = False) -> pb.ShardHeader:
    offset = 0
    for header in headers:
        header.offset = offset
        offset += header.wire_size
    return pb.ShardHeader(epoch=epoch, sequence=sequence, num_rows=num_rows, tensors=headers,
                          last_in_epoch=last)


def shard_frame(epoch: int, sequence: int, arrays: dict[str, np.ndarray], codec: str = "none",
                last: bool = False) -> bytes:
    encoded = [tensors.encode(n, a, codec, byte_shuffle=True, narrow=False)
               for n, a in arrays.items()]
    rows = len(next(iter(arrays.values())))
    header = shard_header(epoch, sequence, [e.header for e in encoded], rows, last)
    return framing.encode_shard(header, [e.data for e in encoded])


# The loader, in a subprocess: its peak memory is its own (Linux).
PROBE = r"""
import json, sys, time
import tether
url, batch_size, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
result = {"error": None, "message": "", "rows": 0}
try:
    retry = tether.RetryPolicy(timeout=0)
    with tether.Loader(url, "train", batch_size=batch_size, retry=retry) as loader:
        for index, batch in enumerate(loader):
            result["rows"] += len(next(iter(batch.values())))
            if index == 0:
                time.sleep(pause)  # a training step that takes a while
except Exception as exc:
    result["error"], result["message"] = type(exc).__name__, str(exc)[:500]
# VmHWM, not ru_maxrss: a child's ru_maxrss starts at its parent's (pytest's) peak.
try:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    result["peak_rss"] = int(line.split()[1]) * 1024
except OSError:  # not Linux: not measured
    result["peak_rss"] = 0
print(json.dumps(result))
"""


def run_loader(url: str, batch_size: int, pause: float = 0.0) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, url, str(batch_size), str(pause)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# A loader holding its window of small shards stays far below this; the attacks
# below would take it to 1 GiB and more.
MEMORY_BOUND = 400 * MiB


def _zstd_of_zeros(size: int) -> bytes:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, "zstd") as out:
        zeros = bytes(MiB)
        for _ in range(size // MiB):
            out.write(zeros)
    return sink.getvalue().to_pybytes()


def zstd_bomb(claimed: int) -> Script:
    """A valid zstd frame of a few KB that decompresses to `claimed` bytes,
    announced honestly in its header (shape, raw_size, checksum)."""
    data = _zstd_of_zeros(claimed)

    def script(request, requests) -> Iterator[bytes]:
        yield plan_frame(1000, 100, {"x": ("|u1", ())})
        header = pb.TensorHeader(
            name="x", dtype="|u1", shape=[claimed], codec="zstd", wire_size=len(data),
            raw_size=claimed, checksum=tensors.get_checksum("crc32")(data),
            checksum_algorithm="crc32")
        # One row claimed: the loader finds the lie only after decompressing, if it
        # does not check the header first.
        yield framing.encode_shard(shard_header(0, 0, [header], 1), [data])

    return script


# --- item 4: a malicious daemon cannot exhaust the loader --------------------


def test_a_zstd_bomb_is_refused_before_allocating(fake_daemon) -> None:
    pytest.importorskip("pyarrow")
    daemon = fake_daemon(zstd_bomb(1 << 30))
    result = run_loader(daemon.url, batch_size=10)
    assert result["error"] == "ProtocolError", result
    assert result["peak_rss"] < MEMORY_BOUND, result


def credit_flood(frames: int, shard_rows: int = 1024, row_bytes: int = 4096) -> Script:
    """A daemon that ignores credits: it sends every shard as fast as it can."""
    rows = frames * shard_rows
    block = np.zeros((shard_rows, row_bytes), dtype=np.uint8)

    def script(request, requests) -> Iterator[bytes]:
        yield plan_frame(rows, shard_rows, {"x": ("|u1", (row_bytes,))})
        for sequence in range(frames):
            yield shard_frame(0, sequence, {"x": block}, last=sequence == frames - 1)

    return script


def test_a_daemon_that_ignores_credits_is_a_protocol_error(fake_daemon) -> None:
    daemon = fake_daemon(credit_flood(150))  # 150 shards of 4 MiB: 600 MiB
    result = run_loader(daemon.url, batch_size=1024, pause=2.0)
    assert result["error"] == "ProtocolError", result
    assert "credit" in result["message"], result
    assert result["peak_rss"] < MEMORY_BOUND, result


def test_an_honest_fake_daemon_streams(fake_daemon) -> None:
    """The fake daemon's frames are right: credits respected, the loader reads all."""

    def script(request, requests) -> Iterator[bytes]:
        yield plan_frame(300, 100, {"x": ("<f4", (2,))})
        for sequence in range(3):
            values = np.full((100, 2), sequence, dtype=np.float32)
            yield shard_frame(0, sequence, {"x": values}, last=sequence == 2)

    daemon = fake_daemon(script)
    with tether.Loader(daemon.url, "train", batch_size=100) as loader:
        batches = [b["x"] for b in loader]
    assert [b[0, 0] for b in batches] == [0, 1, 2]


def _decode(header: pb.TensorHeader, data: bytes) -> np.ndarray:
    return tensors.decode(header, memoryview(data))


def test_an_unknown_widening_is_refused() -> None:
    """u1 on the wire declared as 16-byte floats would widen 16 times."""
    data = bytes(1024)
    for declared, wire in (("<f16", "|u1"), ("<f8", "|u1"), ("<i8", "<f4"), ("<u8", "|i1"),
                           ("<i2", "<u2"), ("<u2", "<u2")):
        header = pb.TensorHeader(
            name="x", dtype=declared, shape=[1024 // np.dtype(wire).itemsize], wire_dtype=wire,
            codec="none", wire_size=len(data), raw_size=len(data),
            checksum=tensors.get_checksum("crc32")(data), checksum_algorithm="crc32")
        with pytest.raises(ProtocolError):
            _decode(header, data)


@pytest.mark.parametrize("shape", [[2**32, 2**32], [2**64 - 1, 2], [2**40], [3, 0, 2**63]])
def test_huge_shapes_are_protocol_errors(shape: list[int]) -> None:
    """Products that overflow int64 (or are merely huge) are refused, not reshaped."""
    header = pb.TensorHeader(name="x", dtype="|u1", shape=shape, codec="none", wire_size=0,
                             raw_size=0, checksum=0, checksum_algorithm="crc32")
    with pytest.raises(ProtocolError):
        _decode(header, b"")


def test_an_empty_tensor_is_fine() -> None:
    header = pb.TensorHeader(name="x", dtype="<f4", shape=[0, 5], codec="none", wire_size=0,
                             raw_size=0, checksum=0, checksum_algorithm="crc32")
    assert _decode(header, b"").shape == (0, 5)


def test_a_raw_size_over_the_frame_limit_is_refused() -> None:
    claimed = rpc.MAX_SHARD_BYTES + 1
    header = pb.TensorHeader(name="x", dtype="|u1", shape=[claimed], codec="zstd", wire_size=4,
                             raw_size=claimed, checksum=tensors.get_checksum("crc32")(b"abcd"),
                             checksum_algorithm="crc32")
    with pytest.raises(ProtocolError, match="limit"):
        _decode(header, b"abcd")


def test_a_shard_that_does_not_match_the_plan_is_refused(fake_daemon) -> None:
    """Columns, dtypes and row counts the plan did not announce."""
    cases = {
        "another column": {"y": np.zeros(10, np.float32)},
        "one more column": {"x": np.zeros(10, np.float32), "y": np.zeros(10, np.float32)},
        "another dtype": {"x": np.zeros(10, np.float64)},
        "another row shape": {"x": np.zeros((10, 2), np.float32)},
        "more rows than a shard": {"x": np.zeros(200, np.float32)},
    }
    for what, arrays in cases.items():
        def script(request, requests, arrays=arrays) -> Iterator[bytes]:
            yield plan_frame(10, 10, {"x": ("<f4", ())})
            yield shard_frame(0, 0, arrays, last=True)

        daemon = fake_daemon(script)
        retry = tether.RetryPolicy(timeout=0)
        with pytest.raises(ProtocolError), \
                tether.Loader(daemon.url, "train", batch_size=10, retry=retry) as loader:
            list(loader)
        daemon.stop()
        assert what


# --- item 11: the header is covered by the checksum --------------------------


def _flip_byte_shuffle(frame: bytes) -> bytes:
    """The frame with its tensor's byte_shuffle flag (field 6, varint 1) cleared."""
    parsed = framing.decode(frame)
    original = parsed.shard.tensors[0].SerializeToString()
    assert b"\x30\x01" in original
    flipped = original.replace(b"\x30\x01", b"\x30\x00", 1)
    assert len(flipped) == len(original)
    out = frame.replace(original, flipped, 1)
    assert out != frame
    return out


def test_a_flipped_header_bit_is_caught() -> None:
    values = np.linspace(0, 1, 1000, dtype=np.float32)
    frame = shard_frame(0, 0, {"x": values}, codec="none")
    # Compressed tensors are the ones byte-shuffled.
    pytest.importorskip("pyarrow")
    frame = shard_frame(0, 0, {"x": values}, codec="lz4")
    damaged = _flip_byte_shuffle(frame)
    with pytest.raises(DataCorrupted, match="header"):
        parsed = framing.decode(damaged)
        tensors.decode(parsed.shard.tensors[0], parsed.payload)  # silently wrong before


def test_a_flipped_plan_bit_is_caught() -> None:
    frame = plan_frame(1000, 100, {"x": ("<f4", ())})
    body = pb.StreamPlan(shard_rows=100).SerializeToString()  # b"\x18\x64"
    assert body in frame
    with pytest.raises(DataCorrupted, match="header"):
        framing.decode(frame.replace(body, b"\x18\x65", 1))


def test_frames_still_parse_as_protobuf_with_the_header_checksum() -> None:
    frame = shard_frame(0, 0, {"x": np.arange(10, dtype=np.float32)})
    parsed = pb.ShardFrame.FromString(frame)
    assert parsed.shard.num_rows == 10 and parsed.header_checksum != 0
