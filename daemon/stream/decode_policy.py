"""Where a stream's images are decoded: on the daemon, or on the loader.

Encoded JPEGs are about a tenth of their pixels, so the choice trades CPU
on one side against bytes on the link. Both sides decode with the same
function (tether.wire.images.decode), so what arrives is the same either way, and the
choice may change from one shard to the next. `auto` estimates the seconds
per image of each way as its slowest stage:

    decode on the loader: max(file bytes / link, loader CPU / loader threads)
    decode on the daemon: max(pixel bytes / link, daemon CPU / daemon workers)

and takes the cheaper. The link rate is the stream's LinkMeter (from acks);
CPU is thread time per image, timed by the daemon when it decodes and
reported by the loader in each ack. A side whose estimate is not refreshed
by the choice (the loader's, while the daemon decodes, and the other way
round) is measured again every EXPLORE_EVERY shards: the loader's by sending
it one shard of files, the daemon's by timing a few images here. Until the
loader has reported, it is assumed as fast per thread as the daemon.

When the loader runs on this machine both sides share its cores, and CPU is
the same whichever side spends it: decoding here then wins only where the
pixels are fewer bytes than the files and the link is the limit.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from tether.wire.images.decode import decode_images
from tether.wire.ragged import Ragged

from .codec_policy import LOADER_THREADS, LinkMeter

DAEMON, LOADER = "daemon", "loader"
SAMPLE_IMAGES = 4  # timed here when the daemon's cost needs (re)measuring
EXPLORE_EVERY = 16  # shards between measurements of the side not chosen


class _Rate:
    """Seconds (or bytes) per image, a running mean over what was observed."""

    def __init__(self) -> None:
        self.total = 0.0
        self.images = 0

    def add(self, total: float, images: int) -> None:
        self.total += total
        self.images += images

    def per_image(self) -> float | None:
        return self.total / self.images if self.images else None


class DecodePlace:
    """Per shard: decode its images here ("daemon") or send the files ("loader")."""

    def __init__(self, requested: str, link: LinkMeter, workers: int,
                 shared_cores: int | None, loader_threads: int = 0) -> None:
        self.requested = requested
        self.link = link
        self.workers = max(1, workers)
        self.shared_cores = shared_cores
        self.loader_threads = loader_threads or LOADER_THREADS
        self.daemon = _Rate()
        self.loader = _Rate()
        self.encoded = _Rate()  # bytes per image of the files
        self.chosen = {DAEMON: 0, LOADER: 0}
        self._since = {DAEMON: 0, LOADER: 0}  # shards since each side was last measured
        self._lock = threading.Lock()

    def observe_daemon(self, seconds: float, images: int) -> None:
        with self._lock:
            self.daemon.add(seconds, images)
            self._since[DAEMON] = 0

    def observe_loader(self, seconds: float, images: int) -> None:
        with self._lock:
            self.loader.add(seconds, images)
            self._since[LOADER] = 0

    def choose(self, files: Ragged, size: tuple[int, int]) -> str:
        """Where to decode these image files (a shard's) to `size`."""
        if self.requested != "auto":
            return self._chose(self.requested)
        with self._lock:
            self.encoded.add(files.nbytes, len(files))
            stale = self.daemon.per_image() is None or self._since[DAEMON] >= EXPLORE_EVERY
            if stale:
                self._since[DAEMON] = 0  # one measurement at a time
        if stale and len(files):
            self._time_here(files[:SAMPLE_IMAGES], size)
        with self._lock:
            place = self._cheaper(size[0] * size[1] * 3)
            if place == DAEMON and self._since[LOADER] >= EXPLORE_EVERY:
                place = LOADER  # the loader reports its cost for this one
                self._since[LOADER] = 0
        return self._chose(place)

    def _chose(self, place: str) -> str:
        with self._lock:
            self.chosen[place] += 1
            for side in self._since:
                self._since[side] += 1
        return place

    def _time_here(self, sample: Ragged, size: tuple[int, int]) -> None:
        started = time.thread_time()
        _, bad = decode_images(sample, size, [""] * len(sample), skip_bad=True)
        good = len(sample) - int(np.count_nonzero(bad))
        if good:
            self.observe_daemon(time.thread_time() - started, good)

    def _cheaper(self, pixel_bytes: int) -> str:
        here = self.daemon.per_image() or 0.0
        there = self.loader.per_image() or here
        link = self.link.bytes_per_second
        encoded = self.encoded.per_image() or 0.0
        if self.shared_cores:
            cpu = here / self.shared_cores
            on_loader = max(encoded / link, cpu)
            on_daemon = max(pixel_bytes / link, cpu)
        else:
            on_loader = max(encoded / link, there / self.loader_threads)
            on_daemon = max(pixel_bytes / link, here / self.workers)
        return DAEMON if on_daemon < on_loader else LOADER
