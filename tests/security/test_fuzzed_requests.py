"""Property-based requests against the running daemon: whatever arrives, it stays up."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import tether
from tether.wire import rpc
from tether.wire.v1 import tether_pb2 as pb

from ..conftest import DaemonProcess, collect

U64 = st.integers(min_value=0, max_value=2**64 - 1)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    folder = root / "data" / "train"
    folder.mkdir(parents=True)
    np.save(folder / "id.npy", np.arange(2000, dtype=np.int64))
    np.save(folder / "x.npy", np.ones((2000, 3), dtype=np.float32))
    daemon = DaemonProcess([folder], root / "state")
    channel = rpc.open_channel(tether.parse_url(daemon.url))
    yield daemon, channel
    channel.close()
    assert daemon.stop() == 0  # it survived every example and exits cleanly


open_requests = st.builds(
    pb.OpenStream,
    dataset=st.one_of(st.just("train"), st.text(max_size=40)),
    columns=st.lists(st.one_of(st.sampled_from(["id", "x"]), st.text(max_size=10)), max_size=3),
    batch_size=U64, shard_bytes=U64, shuffle=st.booleans(), seed=U64,
    num_epochs=st.integers(0, 3), process_index=U64, process_count=U64,
    codec=st.one_of(st.sampled_from(["auto", "none", "lz4", "zstd"]), st.text(max_size=8)),
    accept_codecs=st.lists(st.text(max_size=6), max_size=3), initial_credits=U64,
    start=st.builds(pb.Position, epoch=U64, row=U64), shard_rows=U64,
    resume=st.builds(pb.Cursor, epoch=U64, sequence=U64), shuffle_window_bytes=U64,
    drop_last=st.booleans(),
    parts=st.lists(st.builds(pb.Layout, chunk_rows=st.lists(U64, max_size=3),
                             window_rows=U64), max_size=3),
    part_index=st.integers(0, 3),
    fingerprint=st.one_of(st.just(""), st.text(max_size=30)),
)
follow_ups = st.lists(st.one_of(
    st.builds(lambda n: pb.StreamRequest(credit=pb.Credit(shards=n)), U64),
    st.builds(lambda e, s: pb.StreamRequest(ack=pb.Ack(epoch=e, sequence=s)), U64, U64),
    st.builds(lambda o: pb.StreamRequest(open=o), open_requests),
), max_size=4)


def _exchange(channel, endpoint, messages: list[bytes]) -> None:
    call = channel.stream_stream(rpc.method_path(rpc.STREAM), request_serializer=None,
                                 response_deserializer=None)
    responses = call(iter(messages), metadata=rpc.call_metadata(endpoint), timeout=5)
    try:
        for count, _ in enumerate(responses):
            if count >= 3:  # a stream that may run forever: enough seen
                responses.cancel()
                break
    except grpc.RpcError as exc:
        assert exc.code() != grpc.StatusCode.UNAVAILABLE, "the daemon went away"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(first=open_requests, rest=follow_ups, junk=st.one_of(st.none(), st.binary(max_size=64)))
def test_any_stream_request_leaves_the_daemon_serving(fuzzed, first, rest, junk) -> None:
    daemon, channel = fuzzed
    endpoint = tether.parse_url(daemon.url)
    messages = [pb.StreamRequest(open=first).SerializeToString(),
                *(m.SerializeToString() for m in rest)]
    if junk is not None:
        messages.insert(1, junk)
    _exchange(channel, endpoint, messages)
    with daemon.client() as client:
        assert [d.name for d in client.datasets()] == ["train"]


def test_after_the_fuzzing_data_is_still_exact(fuzzed) -> None:
    daemon, _ = fuzzed
    got = collect(tether.Loader(daemon.url, dataset="train", batch_size=128))[1]
    assert np.array_equal(got["id"], np.arange(2000))
