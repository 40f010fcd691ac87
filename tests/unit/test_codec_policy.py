"""`auto` picks codecs from measured costs and the link the acks reveal."""

from __future__ import annotations

import numpy as np
import pytest

from tether.daemon.stream.codec_policy import AutoCodec, LinkMeter, codec_policy, peer_is_local
from tether.wire.errors import RequestError

TOKENS = np.minimum(np.random.default_rng(0).zipf(1.2, (2048, 512)) - 1, 49_999).astype(np.int64)
NOISE = np.random.default_rng(1).standard_normal((4096, 256)).astype(np.float32)


def _feed(meter: LinkMeter, bytes_per_second: float, starved: bool, acks: int = 40) -> None:
    """Acks of 1 MiB shards arriving at the given rate."""
    step = (1 << 20) / bytes_per_second
    for i in range(acks):
        meter.observe(1 << 20, waited_seconds=step * 0.5 if starved else 0.0, now=i * step)


def test_meter_learns_the_rate_while_the_loader_starves() -> None:
    meter = LinkMeter(initial=12.5e6)
    _feed(meter, 2e6, starved=True)
    assert meter.bytes_per_second == pytest.approx(2e6, rel=0.01)


def test_meter_only_rises_while_the_training_loop_is_the_limit() -> None:
    meter = LinkMeter(initial=12.5e6)
    _feed(meter, 1e6, starved=False)  # slow consumer: says nothing about the link
    assert meter.bytes_per_second == 12.5e6
    _feed(meter, 50e6, starved=False)
    assert meter.bytes_per_second == pytest.approx(50e6, rel=0.01)


@pytest.mark.parametrize("local", [False, True])
def test_slow_link_compresses_tokens_fast_link_sends_them_raw(local: bool) -> None:
    policy = AutoCodec(["none", "lz4", "zstd"], workers=2, narrow=True, local_peer=local)
    _feed(policy.link, 1e6, starved=True)  # 8 Mbit/s
    assert policy.choose("tokens", TOKENS) == "zstd"
    _feed(policy.link, 20e9, starved=True)  # far faster than any codec
    assert policy.choose("tokens", TOKENS) == "none"


def test_incompressible_noise_travels_raw_even_on_a_slow_link() -> None:
    policy = AutoCodec(["none", "lz4", "zstd"], workers=2, narrow=True, local_peer=False)
    _feed(policy.link, 1e6, starved=True)
    assert policy.choose("noise", np.random.default_rng(2).integers(0, 2**62, (4096, 64))) \
        == "none"


def test_fixed_codecs_are_checked_against_what_the_client_accepts() -> None:
    assert codec_policy("zstd", ["none", "zstd"], 2, True, False).choose("x", NOISE) == "zstd"
    with pytest.raises(RequestError, match="cannot decode 'lz4'.*install pyarrow"):
        codec_policy("lz4", ["none"], 2, True, False)
    with pytest.raises(RequestError, match="unknown codec 'gzip'"):
        codec_policy("gzip", ["none"], 2, True, False)


def test_auto_never_offers_a_codec_the_client_lacks() -> None:
    policy = codec_policy("auto", ["none"], 2, True, False)
    _feed(policy.link, 1e6, starved=True)
    assert policy.choose("tokens", TOKENS) == "none"


def test_peer_is_local() -> None:
    assert peer_is_local("ipv4:127.0.0.1:5000")
    assert peer_is_local("ipv6:[::1]:5000")
    assert not peer_is_local("ipv4:10.1.2.3:5000")
