"""`auto` picks the zstd level and byte-shuffle per column, against the link."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

import tether.daemon.stream.codec_policy as codec_policy_module
from tether.bench import data
from tether.daemon.stream.codec_policy import (
    NONE,
    QUICK_LEVEL,
    ZSTD_LEVELS,
    AutoCodec,
    CodecCost,
    FixedCodec,
    best_setting,
    codec_policy,
)
from tether.wire import tensors
from tether.wire.codecs import Compression, check_requested
from tether.wire.errors import RequestError

TOKENS = np.minimum(np.random.default_rng(0).zipf(1.2, (2048, 512)) - 1, 49_999).astype(np.int64)
MB = 1e6


def _cost(ratio: float, compress_mb_per_s: float) -> CodecCost:
    return CodecCost(encode_s_per_byte=1 / (compress_mb_per_s * MB),
                     decode_s_per_byte=1 / (1000 * MB), ratio=ratio)


# Ratios and one-core speeds like those of Zipf tokens on this machine's cores.
COSTS = {
    NONE: CodecCost(0.0, 0.0, 1.0),
    Compression("lz4"): _cost(5.0, 1300),
    Compression("zstd", 1): _cost(7.2, 500),
    Compression("zstd", 1, False): _cost(7.0, 700),
    Compression("zstd", 9): _cost(7.6, 50),
    Compression("zstd", 19): _cost(7.8, 6),
}


@pytest.mark.parametrize("shared_cores", [None, 2])
def test_slow_links_get_tighter_levels(shared_cores: int | None) -> None:
    # 1 MB/s of wire carries 7.8 MB/s raw at level 19: two workers at 6 MB/s keep up.
    assert best_setting(COSTS, 1 * MB, 2, shared_cores) == Compression("zstd", 19)
    # 10 MB/s: level 19 would need 13 cores; level 9 is the tightest the CPU keeps up with.
    assert best_setting(COSTS, 10 * MB, 4, None) == Compression("zstd", 9)
    # 12.5 MB/s on two cores: level 9 is CPU-bound, level 1 wins.
    assert best_setting(COSTS, 12.5 * MB, 2, shared_cores) == Compression("zstd", 1)


def test_fast_links_get_level_one_lz4_or_raw_bytes() -> None:
    assert best_setting(COSTS, 60 * MB, 2, None) == Compression("zstd", 1)
    assert best_setting(COSTS, 300 * MB, 2, None) == Compression("lz4")
    assert best_setting(COSTS, 5000 * MB, 2, None) == NONE
    assert best_setting(COSTS, 5000 * MB, 2, 2) == NONE  # loopback: both ends share the cores


def test_near_ties_go_to_the_cheaper_setting() -> None:
    costs = {NONE: CodecCost(0.0, 0.0, 1.0), Compression("zstd", 1): _cost(3.00, 400),
             Compression("zstd", 3): _cost(3.03, 200)}
    assert best_setting(costs, 1 * MB, 2, None) == Compression("zstd", 1)


def test_byte_shuffle_is_chosen_by_what_it_gains() -> None:
    costs = {NONE: CodecCost(0.0, 0.0, 1.0), Compression("zstd", 1): _cost(1.2, 200),
             Compression("zstd", 1, False): _cost(2.0, 200)}
    assert best_setting(costs, 1 * MB, 2, None) == Compression("zstd", 1, False)


def _feed(policy: AutoCodec, bytes_per_second: float) -> None:
    step = (1 << 20) / bytes_per_second
    for i in range(40):
        policy.link.observe(1 << 20, waited_seconds=step * 0.5, now=i * step)


def test_auto_climbs_the_levels_only_on_a_slow_link() -> None:
    slow = AutoCodec(["none", "lz4", "zstd"], workers=2, narrow=True, local_peer=False)
    _feed(slow, 0.05 * MB)  # 400 kbit/s: every level is faster than the link
    slow.setting("tokens", TOKENS)
    slow.join_climbs()  # the levels above QUICK_LEVEL are climbed in the background
    chosen = slow.setting("tokens", TOKENS)
    measured = slow._costs["tokens"]
    assert Compression("zstd", ZSTD_LEVELS[-1]) in measured
    assert chosen.codec == "zstd" and chosen.level > 1
    assert measured[chosen].ratio >= measured[Compression("zstd", 1)].ratio

    fast = AutoCodec(["none", "lz4", "zstd"], workers=2, narrow=True, local_peer=True)
    _feed(fast, 20e9)
    assert fast.setting("tokens", TOKENS) == NONE
    assert Compression("zstd", ZSTD_LEVELS[-1]) not in fast._costs["tokens"]


def test_a_slower_link_makes_auto_measure_again() -> None:
    policy = AutoCodec(["none", "zstd"], workers=2, narrow=True, local_peer=False)
    _feed(policy, 2e9)
    policy.setting("tokens", TOKENS)
    assert Compression("zstd", ZSTD_LEVELS[-1]) not in policy._costs["tokens"]
    _feed(policy, 0.05 * MB)
    policy.setting("tokens", TOKENS)  # sees the top measured level is link-bound
    policy.join_climbs()  # and climbs, in the background
    assert Compression("zstd", ZSTD_LEVELS[-1]) in policy._costs["tokens"]


def test_measuring_again_times_only_the_settings_near_the_best(monkeypatch) -> None:
    timed: list[Compression] = []
    real = codec_policy_module.measure

    def counting(name, sample, setting, narrow):
        timed.append(setting)
        return real(name, sample, setting, narrow)

    monkeypatch.setattr(codec_policy_module, "measure", counting)
    policy = AutoCodec(["none", "lz4", "zstd"], workers=2, narrow=True, local_peer=False)
    _feed(policy, 12.5 * MB)
    policy.setting("tokens", TOKENS)
    policy.join_climbs()  # its climb counts as a measurement: PROBE_EVERY shards from it
    for _ in range(codec_policy_module.PROBE_EVERY - 1):
        policy.setting("tokens", TOKENS)
    first = len(timed)
    assert Compression("lz4") in timed
    policy.setting("tokens", TOKENS)  # the PROBE_EVERY-th shard: measured again
    again = timed[first:]
    # lz4's ratio is 30% below zstd's: it is not timed again; raw bytes always are.
    assert NONE in again and Compression("lz4") not in again and len(again) < first


def _recording(monkeypatch) -> list[tuple[Compression, str]]:
    """Every setting measured from now on, with the thread that measured it."""
    timed: list[tuple[Compression, str]] = []
    real = codec_policy_module.measure

    def recording(name, sample, setting, narrow):
        timed.append((setting, threading.current_thread().name))
        return real(name, sample, setting, narrow)

    monkeypatch.setattr(codec_policy_module, "measure", recording)
    return timed


def test_the_first_shard_never_waits_for_the_slow_levels(monkeypatch) -> None:
    timed = _recording(monkeypatch)
    policy = AutoCodec(["none", "lz4", "zstd"], workers=2, narrow=True, local_peer=False)
    _feed(policy, 0.05 * MB)  # a link slow enough for level 19
    first = policy.setting("tokens", TOKENS)
    on_the_shard = [s for s, thread in timed if thread == threading.current_thread().name]
    assert on_the_shard and all((s.level or 0) <= QUICK_LEVEL for s in on_the_shard)
    assert first == Compression("zstd", QUICK_LEVEL)
    policy.join_climbs()
    climbed = [s for s, thread in timed if thread.startswith("tether-climb")]
    assert Compression("zstd", ZSTD_LEVELS[-1]) in climbed
    assert not set(climbed) & set(on_the_shard)  # what the shard measured is not timed again
    later = policy.setting("tokens", TOKENS)
    assert later.level > QUICK_LEVEL


def test_a_stream_that_ends_stops_its_climb(monkeypatch) -> None:
    timed = _recording(monkeypatch)
    policy = AutoCodec(["none", "zstd"], workers=2, narrow=True, local_peer=False)
    policy.setting("tokens", TOKENS)  # no acks yet: the climb waits for the link's rate
    assert "tokens" in policy._climbs  # 100 Mbit/s assumed: zstd:3 could keep up
    policy.close()
    policy.join_climbs()
    assert all((s.level or 0) <= QUICK_LEVEL for s, _ in timed)


def test_settings_by_name() -> None:
    for text in ("none", "lz4", "zstd", "zstd:9", "zstd:19:noshuffle", "lz4:noshuffle"):
        assert str(Compression.parse(text)) == text
        check_requested(text)
    for text, problem in [("zstd:0", "no level 0"), ("lz4:3", "no level 3"),
                          ("zstd:x:y", "not CODEC"), ("gzip:3", "unknown codec 'gzip'")]:
        with pytest.raises(RequestError, match=problem):
            check_requested(text)
    policy = codec_policy("zstd:9:noshuffle", ["none", "zstd"], 2, True, False)
    assert isinstance(policy, FixedCodec)
    assert policy.setting("x", TOKENS) == Compression("zstd", 9, False)
    with pytest.raises(RequestError, match="cannot decode 'zstd'"):
        codec_policy("zstd:9", ["none"], 2, True, False)


@pytest.mark.parametrize("setting", ["zstd:1", "zstd:19", "zstd:19:noshuffle", "lz4:noshuffle"])
def test_every_setting_round_trips(setting: str) -> None:
    chosen = Compression.parse(setting)
    features = data._feature_rows(np.random.default_rng(3), 512)["x"]
    for array in (TOKENS[:256], features):
        encoded = tensors.encode("t", array, chosen, byte_shuffle=True, narrow=True)
        assert encoded.header.codec == chosen.codec  # the level is not on the wire
        assert encoded.header.byte_shuffle == chosen.byte_shuffle
        decoded = tensors.decode(encoded.header, encoded.data)
        assert decoded.dtype == array.dtype and np.array_equal(decoded, array)


def _dataset(folder: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    columns = {"id": np.arange(2048, dtype=np.int64),
               "tokens": data._token_rows(rng, 2048)["tokens"][:, :256],
               "x": data._feature_rows(rng, 2048)["x"][:, :64],
               "image": data._tile_rows(rng, 2048)["image"][:, :16, :16]}
    folder.mkdir(parents=True)
    for name, values in columns.items():
        np.save(folder / f"{name}.npy", values)
    return columns




def test_columns_climb_one_at_a_time(monkeypatch) -> None:
    inside, most = [0], [0]
    real = codec_policy_module.measure

    def counting(name, sample, setting, narrow):
        if threading.current_thread().name.startswith("tether-climb"):
            inside[0] += 1
            most[0] = max(most[0], inside[0])
            try:
                return real(name, sample, setting, narrow)
            finally:
                inside[0] -= 1
        return real(name, sample, setting, narrow)

    monkeypatch.setattr(codec_policy_module, "measure", counting)
    policy = AutoCodec(["none", "zstd"], workers=2, narrow=True, local_peer=False)
    _feed(policy, 0.05 * MB)
    for column in ("a", "b", "c"):
        policy.setting(column, TOKENS[:256])
    policy.join_climbs()
    assert most[0] == 1  # the cores also encode: climbs take turns
    assert all(Compression("zstd", ZSTD_LEVELS[-1]) in policy._costs[c] for c in "abc")
