"""Decode image files (JPEG, PNG, WebP, BMP, GIF) into uint8 RGB pixels [H, W, 3].

An image column travels as the encoded file bytes, and either the daemon or
the loader turns them into pixels. Both call `decode_image`, so a batch holds
the same pixels wherever it was decoded (given the same Pillow, and so the same
libjpeg/libpng/libwebp, on both sides).

The method, for a target `size` = (H, W):

1. Open with Pillow. Animated files give their first frame. EXIF orientation
   is applied (Pillow's `ImageOps.exif_transpose`): a phone photo stored
   sideways with its orientation tag arrives upright, and the target size is
   of the upright image. An image of more than
   `MAX_PIXELS` pixels, or one Pillow cannot decode completely (corrupt,
   truncated, not an image), raises `BadImage`: truncated files fail rather
   than decode as grey, as long as `ImageFile.LOAD_TRUNCATED_IMAGES` keeps
   Pillow's default, False.
2. Convert to RGB with Pillow's `convert("RGB")`: grey is copied to R, G and
   B; palette images take their palette's colours; alpha (RGBA, LA, PA,
   palette transparency) is dropped, not composited, so a transparent pixel
   keeps the colour stored under it. 16-bit grey ("I;16") keeps its high byte,
   as Pillow does for 16-bit RGB PNGs (Pillow's own convert would clip it).
3. Resize so the image covers H x W, its shorter side (relative to the target)
   matching: scale = max(H / h, W / w), bilinear (`Resampling.BILINEAR`); the
   other side is rounded to the nearest pixel, halves up. Large JPEGs shrunk by
   2x or more are first decoded at 1/2, 1/4 or 1/8 size (libjpeg's DCT scaling,
   Pillow's `draft`), deterministic for a given Pillow; not one with an EXIF
   orientation other than upright (decoded at full size, then turned).
4. Crop the centre H x W. The offset is floor(excess / 2), so an odd excess
   leaves its extra row at the bottom and its extra column at the right.

An image already H x W is not resampled: its pixels equal Pillow's
`Image.open(f).convert("RGB")`. With `size=None` the image keeps its own size.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

import numpy as np

from ..aligned import aligned_empty
from ..errors import DataCorrupted
from ..ragged import Ragged

if TYPE_CHECKING:
    from PIL import Image

Blob = bytes | bytearray | memoryview | np.ndarray

# Pixels an image may have (the width times the height its header declares,
# checked before decoding): 40 MP fits a 4K frame (8.3 MP) and most camera
# photos; Pillow's own cap, 89 MP, let a 34-byte WebP cost 350-700 MB a decode.
MAX_PIXELS = 40_000_000
# The documented formats, as Pillow names them: nothing else is opened.
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
# Bytes the decodes running at once in this process may hold (their estimate);
# one larger than this runs alone.
DECODE_BYTES = 512 << 20
WEBP_BYTES_PER_PIXEL = 16
_max_pixels = MAX_PIXELS  # this process's default: set_max_pixels


def set_max_pixels(pixels: int) -> None:
    """This process's default pixel budget (the daemon's --max-image-pixels)."""
    global _max_pixels
    if pixels < 1:
        raise ValueError(f"the pixel budget must be positive, got {pixels}")
    _max_pixels = pixels


def max_pixels() -> int:
    """This process's default pixel budget."""
    return _max_pixels


class DecodeMemory:
    """Bytes of decodes in progress, at most `limit` (one larger runs alone)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.taken = limit, 0
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def taking(self, nbytes: int) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: self.taken == 0 or self.taken + nbytes <= self.limit)
            self.taken += nbytes
        try:
            yield
        finally:
            with self._changed:
                self.taken -= nbytes
                self._changed.notify_all()


_decoding = DecodeMemory(DECODE_BYTES)


def _decode_bytes(img: Image.Image) -> int:
    """A decode's memory, estimated from the header: the decoded image in its
    own mode (16-bit and 32-bit channels counted wide) and its RGB copy."""
    width, height = img.size
    if img.format == "WEBP":  # libwebp's animation decoder: two RGBA canvases, then Pillow's
        return width * height * WEBP_BYTES_PER_PIXEL  # (measured: 551 MB for 6000x6000)
    mode = img.mode
    wide = 2 if "16" in mode else 4 if mode in ("I", "F") else 1
    return width * height * (len(mode if mode not in ("I", "F") else "L") * wide + 3)

# Draft, measured on this (shared, noisy) 2-core machine, a 1500x1000 JPEG (q90) to
# 224x224: full decode + bilinear resize 15-30 ms, draft (1/4 scale) + resize 5-7 ms;
# 3000x2000: 113 ms vs 15 ms. Pixels differ from the full decode (mean 0.8/255) but
# are the same wherever the same Pillow decodes, so draft is used.
#
# No faster JPEG decoder: Pillow here already links libjpeg-turbo
# (features.check_feature("libjpeg_turbo")). simplejpeg 1.9, tried, gave identical
# pixels; at full size it took 6.7 ms against 10.6 ms for this module, but on the
# path that matters (DCT-scaled to 224x224, then the same resize) 6.6 ms against
# 6.5 ms. It bundles its own libjpeg-turbo, so a daemon with it and a loader without
# it would agree only while the two builds do, and it adds a second truncation and
# CMYK path to keep in step with Pillow's. Not worth it.


class BadImage(DataCorrupted):
    """An image file that cannot be decoded: corrupt, truncated, too big, not an image."""


def available() -> bool:
    """Whether Pillow is installed, so images can be decoded here."""
    try:
        import PIL  # noqa: F401
    except ImportError:
        return False
    return True


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError as error:
        raise ImportError("decoding images needs Pillow: pip install pillow") from error
    return Image


def _cover(height: int, width: int, size: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of the image scaled to cover `size`, in integers so both sides round alike."""
    target_h, target_w = size
    if target_h * width >= target_w * height:  # scale = H / h: height matches
        return target_h, (width * target_h * 2 + height) // (2 * height)
    return (height * target_w * 2 + width) // (2 * width), target_w


# EXIF orientations (tag 0x0112) that store the image turned a quarter: 5 to 8.
_TURNED = frozenset({5, 6, 7, 8})


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation, 1 (upright) when there is none or it is invalid."""
    try:
        value = img.getexif().get(0x0112, 1)
    except Exception:  # a damaged EXIF block: the image itself may still decode
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I;16"):
        grey = (np.asarray(img).astype(np.uint16) >> 8).astype(np.uint8)
        return _pil().fromarray(np.ascontiguousarray(grey), "L").convert("RGB")
    return img.convert("RGB")


def decode_image(data: Blob, size: tuple[int, int] | None, name: str = "",
                 *, max_pixels: int | None = None) -> np.ndarray:
    """uint8 RGB pixels [H, W, 3] of an encoded image, cover-resized and centre-cropped
    to `size` = (H, W), or at its own size when `size` is None (see the module doc).
    The array may be read-only. Raises `BadImage`, naming `name`, if it cannot."""
    image_module = _pil()
    max_pixels = max_pixels or _max_pixels
    if isinstance(data, np.ndarray):
        data = memoryview(np.ascontiguousarray(data, dtype=np.uint8)).cast("B")
    try:
        # BytesIO shares a bytes object and copies other buffers: 10 us for 270 kB,
        # against milliseconds to decode it.
        img = image_module.open(io.BytesIO(data), formats=FORMATS)
        width, height = img.size
        if width * height > max_pixels:
            raise ValueError(f"{width}x{height} is more than {max_pixels:,} pixels (the "
                             "budget: --max-image-pixels, Loader(max_image_pixels=...))")
        with _decoding.taking(_decode_bytes(img)):
            pixels = _decoded(image_module, img, size)
    except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError, ...
        if isinstance(error, image_module.UnidentifiedImageError):
            # (its own text shows a BytesIO)
            reason = "not a JPEG, PNG, WebP, BMP or GIF file that Pillow can read"
        else:
            reason = str(error) or type(error).__name__
        raise BadImage(f"image {name!r} cannot be decoded: {reason}") from error
    return pixels


def _decoded(image_module: Any, img: Image.Image, size: tuple[int, int] | None) -> np.ndarray:
    """The opened image's pixels, as the module's doc says."""
    width, height = img.size
    # A JPEG's orientation is known before decoding, which its draft needs;
    # another format's is read after (reading a PNG's EXIF decodes it, and
    # must not swallow a decoding error).
    orientation = _orientation(img) if img.format == "JPEG" else None
    box = None
    if size is not None and (height, width) != tuple(size) and orientation == 1:
        new_h, new_w = _cover(height, width, size)
        # Decodes at 1/2, 1/4 or 1/8 scale if that still covers (new_w, new_h);
        # `box` is the part of the smaller image that the full one maps to.
        drafted = img.draft("RGB", (new_w, new_h))
        box = drafted[1] if drafted else None
    img.load()  # decoding errors show here (truncated, corrupt)
    if orientation is None:
        orientation = _orientation(img)
    if orientation != 1:
        from PIL import ImageOps

        img = ImageOps.exif_transpose(img)
        if orientation in _TURNED:  # upright, it is h x w
            width, height = height, width
    img = _to_rgb(img)
    if size is not None and img.size != (size[1], size[0]):
        new_h, new_w = _cover(height, width, size)
        if img.size != (new_w, new_h) or box is not None:
            img = img.resize((new_w, new_h), image_module.Resampling.BILINEAR, box=box)
        left, top = (new_w - size[1]) // 2, (new_h - size[0]) // 2
        img = img.crop((left, top, left + size[1], top + size[0]))
    return np.asarray(img)


def _rows(blobs: Sequence[Blob] | Ragged) -> Sequence[Blob]:
    if not isinstance(blobs, Ragged):
        return blobs
    values, offsets = blobs.values, blobs.offsets.tolist()
    # Zero-copy uint8 views of the shared values, not `ragged[i]` (a bytes copy).
    return [values[offsets[i]:offsets[i + 1]] for i in range(len(blobs))]


def decode_images(blobs: Sequence[Blob] | Ragged, size: tuple[int, int], names: Sequence[str],
                  skip_bad: bool = False, pool: Executor | None = None,
                  max_pixels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode many images into one 64-byte-aligned uint8 array [n, H, W, 3].

    Returns (pixels, bad): `bad` marks the rows that failed. Without `skip_bad` the
    first bad image (in order) raises `BadImage`; with it, `pixels` holds only the
    good rows, in order. `pool` must be a thread pool (workers write into the
    array): Pillow releases the GIL while it decodes and resizes.
    """
    rows = _rows(blobs)
    if len(names) != len(rows):
        raise ValueError(f"{len(rows)} images but {len(names)} names")
    height, width = size
    out = aligned_empty((len(rows), height, width, 3), np.uint8)
    bad = np.zeros(len(rows), dtype=bool)

    def one(i: int) -> None:
        try:
            out[i] = decode_image(rows[i], size, names[i], max_pixels=max_pixels)
        except BadImage:
            if not skip_bad:
                raise
            bad[i] = True

    # Measured on this 2-core machine, 64 JPEGs 1500x1000 -> 224x224: idle, 1 thread
    # 7.3 ms/image, 2 threads 4.1 ms/image (1.8x: Pillow does release the GIL); with
    # another process busy on one core, 7.5-13 ms either way (no gain, little loss).
    if pool is None:
        for i in range(len(rows)):
            one(i)
    else:
        for _ in pool.map(one, range(len(rows))):  # in order: the first failure raises
            pass
    if bad.any():
        good = np.flatnonzero(~bad)
        for j, i in enumerate(good):  # j <= i: move good rows up in place, in order
            if j != i:
                out[j] = out[i]
        out = out[:len(good)]  # a prefix view: still aligned
    return out, bad


def image_decode_seconds(sample_blobs: Sequence[Blob] | Ragged, size: tuple[int, int] | None,
                         ) -> float:
    """Seconds to decode one image, best of 2 passes over at most 4 of `sample_blobs`."""
    rows = list(_rows(sample_blobs))[:4]
    if not rows:
        return 0.0
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        for blob in rows:
            # A bad image costs time too; the policy wants the typical cost.
            with contextlib.suppress(BadImage):
                decode_image(blob, size)
        best = min(best, time.perf_counter() - start)
    return best / len(rows)
