"""Where a stream's images are decoded: on the daemon, or on the loader.

Encoded JPEGs are about a tenth of their pixels, so the choice trades CPU
on one side against bytes on the link. Both sides decode with the same
function (tether.imaging), so what arrives is the same either way, and the
choice may change from one shard to the next. `auto` estimates the seconds
per image of each way as its slowest stage:

    decode on the loader: max(encoded bytes / link, loader decode / loader threads)
    decode on the daemon: max(daemon decode / daemon workers, pixel bytes / link)

and takes the cheaper. The link rate is the stream's LinkMeter (from acks);
the daemon times its own decoding; each ack says how long the loader spent
decoding that shard's images. Until the loader has reported, it is assumed
as fast as the daemon. When the loader runs on this machine both share its
cores, and the only difference left is the bytes: decoding here then wins
only if the link (loopback) carries pixels faster than the loader decodes.
"""

from __future__ import annotations

import threading

from tether.imaging import image_decode_seconds
from tether.wire.ragged import Ragged

from .codec_policy import LOADER_THREADS, LinkMeter

DAEMON, LOADER = "daemon", "loader"
SAMPLE_IMAGES = 4  # timed once per stream, before the first choice


class _Rate:
    """Seconds per image, a running mean over what was observed."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.images = 0

    def add(self, seconds: float, images: int) -> None:
        self.seconds += seconds
        self.images += images

    def per_image(self) -> float | None:
        return self.seconds / self.images if self.images else None


class DecodePlace:
    """Per shard: decode its images here ("daemon") or send the files ("loader")."""

    def __init__(self, requested: str, link: LinkMeter, workers: int,
                 shared_cores: int | None) -> None:
        self.requested = requested
        self.link = link
        self.workers = max(1, workers)
        self.shared_cores = shared_cores
        self.daemon = _Rate()
        self.loader = _Rate()
        self.encoded = _Rate()  # bytes (as "seconds") per image of the files
        self.chosen = {DAEMON: 0, LOADER: 0}
        self._lock = threading.Lock()

    def observe_daemon(self, seconds: float, images: int) -> None:
        with self._lock:
            self.daemon.add(seconds, images)

    def observe_loader(self, seconds: float, images: int) -> None:
        with self._lock:
            self.loader.add(seconds, images)

    def choose(self, files: Ragged, size: tuple[int, int]) -> str:
        """Where to decode these image files (a shard's) to `size`."""
        if self.requested == "auto" and self.daemon.per_image() is None and len(files):
            sample = files[:SAMPLE_IMAGES]  # what decoding costs here, once
            self.observe_daemon(image_decode_seconds(sample, size) * len(sample), len(sample))
        with self._lock:
            self.encoded.add(files.nbytes, len(files))
            place = self.requested if self.requested != "auto" else \
                self._cheaper(size[0] * size[1] * 3)
            self.chosen[place] += 1
            return place

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
            on_loader = max(encoded / link, there / LOADER_THREADS)
            on_daemon = max(pixel_bytes / link, here / self.workers)
        return DAEMON if on_daemon < on_loader else LOADER
