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
from tether.state import LoaderState
from tether.wire import framing, rpc, tensors
from tether.wire.errors import DataCorrupted, ProtocolError, RequestError
from tether.wire.v1 import tether_pb2 as pb

from ..conftest import DaemonProcess

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
               batch_size: int = 1) -> bytes:
    """A plan as an honest daemon announces it for the loader's `batch_size`."""
    plan = pb.StreamPlan(
        fingerprint="fake", num_rows=rows, shard_rows=shard_rows,
        shards_per_epoch=-(-rows // shard_rows), batches_per_epoch=-(-rows // batch_size), seed=0,
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
        yield plan_frame(1000, 100, {"x": ("|u1", ())}, request.batch_size)
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
        yield plan_frame(rows, shard_rows, {"x": ("|u1", (row_bytes,))}, request.batch_size)
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
        yield plan_frame(300, 100, {"x": ("<f4", (2,))}, request.batch_size)
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
            yield plan_frame(10, 10, {"x": ("<f4", ())}, request.batch_size)
            yield shard_frame(0, 0, arrays, last=True)

        daemon = fake_daemon(script)
        retry = tether.RetryPolicy(timeout=0)
        with pytest.raises(ProtocolError), \
                tether.Loader(daemon.url, "train", batch_size=10, retry=retry) as loader:
            list(loader)
        daemon.stop()
        assert what


def test_a_plan_without_columns_is_refused(fake_daemon) -> None:
    """Shards of no tensors could claim any number of rows: endless empty batches."""

    def script(request, requests) -> Iterator[bytes]:
        yield plan_frame(2**40, 2**40, {}, request.batch_size)
        yield framing.encode_shard(shard_header(0, 0, [], 2**40, last=True), [])

    daemon = fake_daemon(script)
    retry = tether.RetryPolicy(timeout=0)
    with pytest.raises(ProtocolError, match="no columns"), \
            tether.Loader(daemon.url, "train", batch_size=10, retry=retry) as loader:
        next(iter(loader))


@pytest.mark.parametrize("epoch", [2**63, 2**64 - 1])
def test_a_shard_of_an_epoch_past_any_plan_is_refused(fake_daemon, epoch: int) -> None:
    def script(request, requests) -> Iterator[bytes]:
        yield plan_frame(10, 10, {"x": ("<f4", ())}, request.batch_size)
        yield shard_frame(epoch, 0, {"x": np.zeros(10, np.float32)}, last=True)

    daemon = fake_daemon(script)
    retry = tether.RetryPolicy(timeout=0)
    with pytest.raises(ProtocolError), \
            tether.Loader(daemon.url, "train", batch_size=10, retry=retry) as loader:
        list(loader)


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


# --- item 12: forged states and requests -------------------------------------

OFFLINE = "tether://127.0.0.1:9/?tls=off&token=x"


def _state(**request) -> dict:
    loader = tether.Loader(OFFLINE, "train", batch_size=8, shuffle=True, seed=3)
    state = loader.state_dict()
    loader.close()
    state["request"].update(request)
    return state


FORGED_REQUESTS = [
    {"start": {"epoch": 0, "row": -20000}},
    {"start": {"epoch": -1, "row": 0}},
    {"start": {"epoch": 2**64, "row": 0}},
    {"start": {"epoch": 0, "row": 2**64}},
    {"start": {"epoch": "0", "row": 0}},
    {"start": {"epoch": 0.5, "row": 0}},
    {"start": {"epoch": True, "row": 0}},
    {"start": {"epoch": 0}},
    {"start": [0, 0, 0]},
    {"start": "0,0"},
    {"start": None},
    {"batch_size": 8.0},
    {"batch_size": True},
    {"batch_size": "8"},
    {"batch_size": 2**64},
    {"seed": -1},
    {"seed": 2**64},
    {"seed": 3.0},
    {"shuffle": 1},
    {"shuffle": "yes"},
    {"drop_last": 0},
    {"dataset": 5},
    {"dataset": ["train"]},
    {"columns": "ab"},
    {"columns": [1, 2]},
    {"columns": None},
    {"num_epochs": 0},
    {"num_epochs": 2**64},
    {"num_epochs": 1.5},
    {"num_epochs": False},
    {"shard_bytes": 2**70},
    {"shard_bytes": 4096.0},
    {"shuffle_window_bytes": -1},
    {"shuffle_window_bytes": 2**64},
    {"shuffle_window_bytes": "1G"},
    {"codec": 3},
    {"codec": "brotli"},
    {"unknown_field": 1},
]


@pytest.mark.parametrize("forged", FORGED_REQUESTS, ids=[str(r) for r in FORGED_REQUESTS])
def test_a_forged_state_is_a_request_error(forged: dict) -> None:
    state = _state(**forged)
    loader = tether.Loader(OFFLINE, "train", batch_size=8, shuffle=True, seed=3)
    try:
        with pytest.raises(RequestError):
            loader.load_state_dict(state)
    finally:
        loader.close()


@pytest.mark.parametrize("state", [
    None, [], "state", {}, {"version": 2}, {"version": "2"}, {"version": 2.0},
    {"version": True}, {"version": 3},
    {"version": 2, "request": None, "fingerprint": ""},
    {"version": 2, "request": [], "fingerprint": ""},
    {"version": 2, "request": "x", "fingerprint": ""},
], ids=repr)
def test_a_malformed_state_is_a_request_error(state) -> None:
    with pytest.raises(RequestError):
        LoaderState.from_dict(state)


@pytest.mark.parametrize("missing", ["request", "fingerprint", "version"])
def test_a_state_missing_a_key_is_a_request_error(missing: str) -> None:
    state = _state()
    del state[missing]
    with pytest.raises(RequestError):
        LoaderState.from_dict(state)


def test_a_state_with_a_fingerprint_that_is_no_string_is_refused() -> None:
    state = _state()
    state["fingerprint"] = 12
    with pytest.raises(RequestError):
        LoaderState.from_dict(state)


def test_a_missing_request_field_is_a_request_error() -> None:
    state = _state()
    del state["request"]["batch_size"]
    with pytest.raises(RequestError):
        LoaderState.from_dict(state)


def test_a_valid_state_round_trips() -> None:
    state = _state(start={"epoch": 1, "row": 16})
    restored = LoaderState.from_dict(json.loads(json.dumps(state)))
    assert restored.spec.start == (1, 16) and restored.to_dict() == state


@pytest.mark.parametrize("seed", [-1, 2**64, 1.5, True, "3"])
def test_a_bad_seed_is_a_request_error(seed) -> None:
    with pytest.raises(RequestError, match="seed"):
        tether.Loader(OFFLINE, "train", batch_size=8, shuffle=True, seed=seed)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("forged")
    folder = root / "data" / "train"
    folder.mkdir(parents=True)
    np.save(folder / "id.npy", np.arange(20000, dtype=np.int64))
    daemon = DaemonProcess([folder], root / "state")
    yield daemon
    assert daemon.stop() == 0


@pytest.mark.parametrize("start", [(0, 20001), (0, 2**63), (2**64 - 1, 0), (2**63, 100)])
def test_a_forged_start_is_refused(daemon, start) -> None:
    """A start past the end, or in an epoch no plan reaches: never 39,900 rows."""
    loader = tether.Loader(daemon.url, "train", batch_size=100, num_epochs=None)
    state = loader.state_dict()
    state["request"]["start"] = {"epoch": start[0], "row": start[1]}
    try:
        with pytest.raises(RequestError):
            loader.load_state_dict(state)  # refused here, or by the daemon:
            next(iter(loader))
    finally:
        loader.close()


def test_a_forged_negative_row_yields_no_extra_rows(daemon) -> None:
    loader = tether.Loader(daemon.url, "train", batch_size=100)
    state = loader.state_dict()
    state["request"]["start"] = {"epoch": 0, "row": -20000}
    with pytest.raises(RequestError):
        loader.load_state_dict(state)
    ids = np.concatenate([b["id"] for b in loader])
    loader.close()
    assert np.array_equal(ids, np.arange(20000))


U64_MAX = 2**64 - 1
FORGED_OPENS = {
    "cursor epoch 2^64-1": dict(resume=pb.Cursor(epoch=U64_MAX, sequence=0)),
    "cursor sequence 2^64-1": dict(resume=pb.Cursor(epoch=0, sequence=U64_MAX)),
    "cursor 2^64-1 both": dict(resume=pb.Cursor(epoch=U64_MAX, sequence=U64_MAX)),
    "forever, cursor epoch 2^64-1": dict(num_epochs=0, resume=pb.Cursor(epoch=U64_MAX)),
    "start epoch 2^64-1": dict(start=pb.Position(epoch=U64_MAX, row=0)),
    "forever, start epoch 2^64-1": dict(num_epochs=0, start=pb.Position(epoch=U64_MAX)),
    "start row 2^64-1": dict(start=pb.Position(epoch=0, row=U64_MAX)),
    "num_epochs 2^64-1": dict(num_epochs=U64_MAX),
    "shard_rows 2^64-1": dict(shard_rows=U64_MAX),
    "batch_size 2^64-1": dict(batch_size=U64_MAX),
    "process_count 2^64-1": dict(process_count=U64_MAX, process_index=5),
    "shuffle window 2^64-1": dict(shuffle=True, shuffle_window_bytes=U64_MAX),
    "huge part": dict(parts=[pb.Layout(chunk_rows=[U64_MAX]), pb.Layout(chunk_rows=[20000])],
                      part_index=1),
    "huge part count": dict(parts=[pb.Layout(chunk_rows=[1])] * 5000, part_index=4999),
    "credits 2^64-1": dict(initial_credits=U64_MAX),
    "seed 2^64-1, shuffled": dict(shuffle=True, seed=U64_MAX),
}


@pytest.mark.parametrize("fields", FORGED_OPENS.values(), ids=FORGED_OPENS.keys())
def test_the_daemon_answers_forged_requests_without_internal_errors(daemon, fields) -> None:
    request = pb.OpenStream(dataset="train", batch_size=100, num_epochs=1, initial_credits=2,
                            accept_checksums=["crc32"])
    for name, value in fields.items():
        if isinstance(value, list):
            getattr(request, name).extend(value)
        elif hasattr(value, "CopyFrom"):
            getattr(request, name).CopyFrom(value)
        else:
            setattr(request, name, value)
    endpoint = tether.parse_url(daemon.url)
    channel = rpc.open_channel(endpoint)
    try:
        call = channel.stream_stream(rpc.method_path(rpc.STREAM),
                                     request_serializer=pb.StreamRequest.SerializeToString,
                                     response_deserializer=None)
        responses = call(iter([pb.StreamRequest(open=request)]),
                         metadata=rpc.call_metadata(endpoint), timeout=20)
        try:
            for count, _ in enumerate(responses):
                if count >= 2:
                    responses.cancel()
                    break
        except grpc.RpcError as exc:
            assert exc.code() in (grpc.StatusCode.INVALID_ARGUMENT,
                                  grpc.StatusCode.FAILED_PRECONDITION,
                                  grpc.StatusCode.CANCELLED), (exc.code(), exc.details())
    finally:
        channel.close()
