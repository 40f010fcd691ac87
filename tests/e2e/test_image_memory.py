"""A 2 GB image folder, decoded for the trainer: memory stays within the windows
on both sides, however much of the folder has gone by."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from ..conftest import DaemonProcess
from .test_soak import watch_memory

PIL = pytest.importorskip("PIL.Image")

FOLDER_BYTES = 2 << 30
DISTINCT = 64  # photos; the folder holds copies of them under other names
SHARD_BYTES = 1 << 20
PREFETCH = 4

_CONSUMER = """
import sys, time, tether
loader = tether.Loader(sys.argv[1], dataset="photos", batch_size=32, prefetch=4,
                       shard_bytes=1 << 20, shuffle=True, seed=0, image_size=(64, 64),
                       decode=sys.argv[2], columns=["image", "label"])
images = 0
for batch in loader:
    if not images:
        print("started", flush=True)
    images += len(batch["label"])
    time.sleep(0.002)
print(images, flush=True)
"""


def _photo(rng: np.random.Generator) -> bytes:
    """A JPEG of about 300 KB: smooth gradients and noise, 1024 x 768."""
    y, x = np.mgrid[0:768, 0:1024]
    base = np.stack([x / 4, y / 3, (x + y) / 7], axis=-1) + rng.normal(0, 40, (768, 1024, 3))
    out = io.BytesIO()
    PIL.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=95)
    return out.getvalue()


def _write_folder(root: Path) -> int:
    rng = np.random.default_rng(0)
    photos = [_photo(rng) for _ in range(DISTINCT)]
    written = count = 0
    while written < FOLDER_BYTES:
        folder = root / f"class{count % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        data = photos[count % DISTINCT]
        (folder / f"{count:06d}.jpg").write_bytes(data)
        written += len(data)
        count += 1
    return count


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """The folder and its image count, written once: both tests only read it."""
    root = tmp_path_factory.mktemp("folder") / "photos"
    count = _write_folder(root)
    assert sum(f.stat().st_size for f in root.rglob("*.jpg")) >= FOLDER_BYTES
    return root, count


@pytest.mark.slow
@pytest.mark.parametrize("decode", ["loader", "daemon"])
def test_memory_stays_within_the_windows_on_a_2gb_image_folder(tmp_path: Path, photos,
                                                                decode: str) -> None:
    folder, count = photos
    daemon = DaemonProcess([folder], tmp_path / "state")
    try:
        samples, output = watch_memory(daemon, [_CONSUMER, daemon.url, decode], every=0.5)
        delivered = int(output)
    finally:
        assert daemon.stop() == 0
    assert delivered == count  # every image, once
    steady = samples[len(samples) // 5:]
    # Both windows together are a few shards: of pixels (64 x 64 x 3 a row, shards
    # sized for them) or of files (a shard of ~300 KB files is at most 64 MiB).
    bound = 256 << 20
    for side, values in (("daemon", [d for d, _ in steady]), ("loader", [c for _, c in steady])):
        growth = max(values) - min(values)
        print(f"{side} ({decode}): {count} images, {FOLDER_BYTES >> 20} MiB of files, "
              f"anonymous memory {min(values) >> 20}..{max(values) >> 20} MiB")
        assert growth < bound, f"{side} memory grew by {growth >> 20} MiB"
        assert max(values) < 1 << 30, f"{side} held {max(values) >> 20} MiB"
