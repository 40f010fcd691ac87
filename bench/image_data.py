"""Image folders for the bench: generated JPEGs, or a subset of a user's folder.

Generated images stand in for photos, not noise: random noise does not
compress like photos do (a JPEG of noise is several times a photo's size),
and the bytes per image decide whether the link or the decoding is the
limit. Each image is a smooth colour field with a few filled shapes, softly
blurred, with a blotchy texture and mild grain, about ImageNet's size
(400 to 500 pixels wide, 4:3, 3:2, 3:4 or square), saved at quality 90:
about 55 kB a file (ImageNet's average is about 110 kB, at higher detail).
Classes are subfolders (class_0 ... class_9), so Tether serves columns
`image`, `label` and `path`.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np

CLASSES = 10
QUALITY = 90
TEXTURE = 15.0  # standard deviation of the blotches, in pixel levels
GRAIN = 4.0  # standard deviation of the per-pixel grain
SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")  # what Tether serves as images


def photo(rng: np.random.Generator) -> bytes:
    """One JPEG of natural-looking content (see the module doc)."""
    from PIL import Image, ImageDraw, ImageFilter

    width = int(rng.integers(400, 501))
    height = int(width * rng.choice([0.75, 0.667, 1.333, 1.0]))
    corners = rng.integers(0, 256, (int(rng.integers(2, 5)), int(rng.integers(2, 5)), 3),
                           dtype=np.uint8)
    img = Image.fromarray(corners).resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 9))):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        box = [x, y, x + int(rng.integers(20, width // 2)), y + int(rng.integers(20, height // 2))]
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = rng.integers(3)
        if shape == 0:
            draw.ellipse(box, fill=colour)
        elif shape == 1:
            draw.rectangle(box, fill=colour)
        else:
            corners_xy = [(int(rng.integers(0, width)), int(rng.integers(0, height)))
                          for _ in range(3)]
            draw.polygon(corners_xy, fill=colour)
    img = img.filter(ImageFilter.BoxBlur(1))  # soft edges, as a lens gives
    blotches = rng.standard_normal((height // 4, width // 4), dtype=np.float32) * TEXTURE
    texture = np.asarray(Image.fromarray(blotches, "F").resize((width, height),
                                                              Image.Resampling.BILINEAR))
    grain = rng.standard_normal((height, width, 1), dtype=np.float32) * GRAIN
    pixels = np.asarray(img, dtype=np.float32) + texture[..., None] + grain
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, "JPEG",
                                                                   quality=QUALITY)
    return out.getvalue()


def write_jpegs(dataset: Path, nbytes: int, seed: int = 0) -> Path:
    """Generate JPEGs into `dataset/class_N/` until they hold about `nbytes`."""
    rng = np.random.default_rng(seed)
    written = count = 0
    while written < nbytes or count < CLASSES:  # at least one image a class
        folder = dataset / f"class_{count % CLASSES}"
        folder.mkdir(parents=True, exist_ok=True)
        blob = photo(rng)
        (folder / f"{count:07d}.jpg").write_bytes(blob)
        written += len(blob)
        count += 1
    return dataset


def image_files(folder: Path) -> list[Path]:
    """The image files under `folder`, sorted, hidden ones left out (as Tether does)."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES
                  and p.is_file() and not any(part.startswith(".")
                                              for part in p.relative_to(folder).parts))


def file_bytes(folder: Path) -> int:
    """Bytes of the encoded image files: what a decode-on-the-loader stream moves."""
    return sum(p.stat().st_size for p in image_files(folder))


def _round_robin(files: list[Path], folder: Path) -> Iterator[Path]:
    """Files alternating between class folders, so any prefix has every class."""
    by_class: dict[Path, list[Path]] = {}
    for path in files:
        by_class.setdefault(path.relative_to(folder).parts[0], []).append(path)
    queues = list(by_class.values())
    for i in range(max(map(len, queues), default=0)):
        for queue in queues:
            if i < len(queue):
                yield queue[i]


def copy_image_folder(source: Path, dataset: Path, nbytes: int) -> Path:
    """Up to `nbytes` of `source`'s images into `dataset`, keeping the class folders.

    Hard links where the file system allows (no copy), else copies."""
    copied = 0
    for path in _round_robin(image_files(source), source):
        if copied >= nbytes:
            break
        target = dataset / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copyfile(path, target)
        copied += target.stat().st_size
    return dataset


def is_image_folder(path: Path) -> bool:
    """Whether Tether serves `path` as one image folder dataset."""
    from tether.daemon.sources import discover
    from tether.daemon.sources.images import ImageFolderSource

    if not path.is_dir():
        return False
    return any(found.paths == [path] and found.reader is ImageFolderSource
               for found in discover(path))
