"""Per-tensor checksums: left out over TLS, which checks every byte; kept on plain ports."""

from __future__ import annotations

import numpy as np
import pytest

import tether
from tether.pipeline.receiver import Receiver
from tether.wire import framing, rpc, tensors
from tether.wire.checksums import UNCHECKED, available_checksums, choose_checksum
from tether.wire.errors import ProtocolError
from tether.wire.spec import Connection, StreamSpec
from tether.wire.v1 import tether_pb2 as pb

from ..conftest import collect, make_features


def _algorithms(url: str, offered: tuple[str, ...]) -> set[str]:
    """The checksum algorithms of one stream's frames and tensors, offering `offered`."""
    endpoint = tether.parse_url(url)
    spec = StreamSpec(dataset="data", batch_size=100, codec="none", num_epochs=1)
    request = spec.to_proto(Connection(accept_codecs=("none",), accept_checksums=offered,
                                       initial_credits=64))
    seen = set()
    with rpc.open_channel(endpoint) as channel:
        receiver = Receiver(channel, request, rpc.call_metadata(endpoint))
        try:
            for frame in receiver.frames():
                if frame.shard is not None:
                    seen |= {t.checksum_algorithm for t in frame.shard.tensors}
                    receiver.release(frame.shard.epoch, frame.shard.sequence)
        finally:
            receiver.close()
    return seen


def test_tls_streams_go_unsummed_and_plain_ones_keep_their_sums(serve, npy_dataset) -> None:
    data = npy_dataset(rows=2000, name="data")
    offered = (UNCHECKED, *available_checksums())
    tls = serve(data)
    assert _algorithms(tls.url, offered) == {UNCHECKED}
    assert _algorithms(tls.url, tuple(available_checksums())) == {available_checksums()[0]}
    plain = serve(data, args=("--insecure",))
    # offered on a plain port (a loader that should not have): the daemon still sums
    assert _algorithms(plain.url, offered) == {available_checksums()[0]}


@pytest.mark.parametrize("insecure", [False, True])
def test_the_loader_offers_no_sums_only_over_tls(serve, npy_dataset, insecure: bool) -> None:
    data = npy_dataset(rows=3000, name="data")
    daemon = serve(data, args=("--insecure",) if insecure else ())
    _, merged = collect(tether.Loader(daemon.url, dataset="data", batch_size=128,
                                      codec="none"))
    for name, values in make_features(3000).items():
        np.testing.assert_array_equal(merged[name], values)


def test_a_plain_loader_refuses_an_unsummed_frame() -> None:
    frame = framing.encode_plan(pb.StreamPlan(), checksum=UNCHECKED)
    with pytest.raises(ProtocolError, match="did not offer"):
        framing.decode(frame, offered=("crc32c", "crc32"))
    assert framing.decode(frame, offered=(UNCHECKED, "crc32")).plan is not None


def test_a_plain_loader_refuses_an_unsummed_tensor_in_a_summed_frame() -> None:
    values = np.arange(64, dtype=np.int64)
    tensor = tensors.encode("x", values, "none", byte_shuffle=False, narrow=False,
                            checksum=UNCHECKED)  # a daemon that summed the header only
    header = pb.ShardHeader(epoch=0, sequence=0, num_rows=64, tensors=[tensor.header])
    frame = framing.encode_shard(header, tensor.place(0), checksum="crc32")
    with pytest.raises(ProtocolError, match="tensor 'x' summed with 'none'"):
        framing.decode(frame, offered=("crc32",))
    decoded = framing.decode(frame, offered=(UNCHECKED, "crc32"))
    assert np.array_equal(tensors.decode(decoded.shard.tensors[0], decoded.payload), values)


def test_only_a_tls_call_may_go_unsummed() -> None:
    offered = [UNCHECKED, "crc32"]
    assert choose_checksum(offered, tls=True) == UNCHECKED
    assert choose_checksum(offered, tls=False) == "crc32"
    assert choose_checksum(["crc32"], tls=True) == "crc32"
    assert UNCHECKED not in available_checksums()
