"""decode="auto": where images are decoded follows the link and both sides' CPU,
and neither side's cost is left unmeasured for long."""

from __future__ import annotations

import io

import numpy as np
import pytest

from tether.daemon.stream.codec_policy import LinkMeter
from tether.daemon.stream.decode_policy import DAEMON, EXPLORE_EVERY, LOADER, DecodePlace
from tether.wire.ragged import Ragged

PIL = pytest.importorskip("PIL.Image")
SIZE = (64, 64)


@pytest.fixture(scope="module")
def files() -> Ragged:
    rng = np.random.default_rng(0)
    blobs = []
    for _ in range(8):
        out = io.BytesIO()
        PIL.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(out, "JPEG")
        blobs.append(out.getvalue())
    return Ragged.from_rows(blobs)


def _place(link_bytes_per_s: float, workers: int = 2, loader_threads: int = 2) -> DecodePlace:
    return DecodePlace("auto", LinkMeter(link_bytes_per_s), workers, None, loader_threads)


def test_a_slow_link_decodes_on_the_loader(files: Ragged) -> None:
    place = _place(100e6 / 8)
    assert {place.choose(files, SIZE) for _ in range(40)} == {LOADER}
    assert place.daemon.per_image() > 0  # measured here, once, on a sample


def test_a_fast_link_to_a_slow_loader_decodes_on_the_daemon(files: Ragged) -> None:
    place = _place(10e9, workers=8, loader_threads=1)
    place.choose(files, SIZE)
    place.observe_loader(place.daemon.per_image() * 50, 10)  # 5x slower per image
    assert place.choose(files, SIZE) == DAEMON


def test_the_daemon_side_still_learns_how_fast_the_loader_is(files: Ragged) -> None:
    place = _place(10e9, workers=8, loader_threads=1)
    choices = [place.choose(files, SIZE) for _ in range(3 * EXPLORE_EVERY)]
    assert choices[0] == DAEMON  # assumed as fast as the daemon: 8 workers beat 1 thread
    explored = [i for i, c in enumerate(choices) if c == LOADER]
    gaps = [b - a for a, b in zip(explored, explored[1:], strict=False)]
    assert explored and all(gap >= EXPLORE_EVERY for gap in gaps)
    # The loader reports it is 100x faster a thread: from then on it decodes.
    place.observe_loader(place.daemon.per_image() / 100 * 10, 10)
    assert {place.choose(files, SIZE) for _ in range(8)} == {LOADER}


def test_fixed_places_are_kept(files: Ragged) -> None:
    for requested in (DAEMON, LOADER):
        place = DecodePlace(requested, LinkMeter(1.0), 2, None)
        assert {place.choose(files, SIZE) for _ in range(3 * EXPLORE_EVERY)} == {requested}


def test_on_one_machine_the_loader_decodes_unless_pixels_are_smaller(files: Ragged) -> None:
    place = DecodePlace("auto", LinkMeter(10e9), 2, shared_cores=2)
    assert place.choose(files, SIZE) == LOADER
    tiny = DecodePlace("auto", LinkMeter(1e3), 2, shared_cores=2)  # pixels 2x2: 12 bytes
    assert tiny.choose(files, (2, 2)) == DAEMON
