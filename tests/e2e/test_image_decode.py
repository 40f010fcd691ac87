"""Images decoded for the trainer, on the daemon, the loader or wherever is cheaper:
the same pixels every way, every image once, corrupt ones named or skipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tether
from tether.wire.errors import DataCorrupted
from tether.wire.images.decode import decode_image

from ..conftest import state_after

PIL = pytest.importorskip("PIL.Image")

SIZE = (24, 32)
CLASSES = {"cat": 23, "dog": 17, "eel": 11}


def _image(rng: np.random.Generator, index: int):
    mode = ["RGB", "L", "P", "RGBA"][index % 4]
    height, width = [(24, 32), (40, 50), (31, 29), (64, 20)][index % 4]
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = PIL.fromarray(pixels, "RGB")
    if mode == "P":
        return image.quantize(16)
    return image.convert(mode)


def write_folder(root: Path, seed: int = 0) -> dict[str, tuple[str, bytes]]:
    """Class subfolders of PNG and JPEG images: {relative path: (class, file bytes)}."""
    rng = np.random.default_rng(seed)
    written = {}
    index = 0
    for name, count in CLASSES.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            image = _image(rng, index)
            jpeg = i % 3 == 0 and image.mode in ("RGB", "L")
            path = root / name / f"{i:03d}.{'jpg' if jpeg else 'png'}"
            image.save(path)
            written[f"{name}/{path.name}"] = (name, path.read_bytes())
            index += 1
    return written


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    from ..conftest import DaemonProcess

    root = tmp_path_factory.mktemp("e2e-images")
    written = write_folder(root / "pets")
    daemon = DaemonProcess([root / "pets"], root / "state")
    daemon.folder = root / "pets"
    yield daemon, written
    assert daemon.stop() == 0


def _collect(loader: tether.Loader) -> tuple[list[str], np.ndarray, np.ndarray]:
    paths, images, labels = [], [], []
    for batch in loader:
        paths.extend(batch["path"])
        images.append(batch["image"])
        labels.append(batch["label"])
    return paths, np.concatenate(images), np.concatenate(labels)


@pytest.mark.parametrize("decode", ["loader", "daemon", "auto"])
def test_every_image_once_with_exact_pixels_wherever_decoded(pets, decode: str) -> None:
    daemon, written = pets
    with tether.Loader(daemon.url, dataset="pets", batch_size=8, shuffle=True, seed=3,
                       image_size=SIZE, decode=decode, shard_bytes=8 << 10) as loader:
        paths, images, labels = _collect(loader)
    assert sorted(paths) == sorted(written) and paths != sorted(paths)
    assert images.shape == (len(written), *SIZE, 3) and images.dtype == np.uint8
    classes = sorted(CLASSES)
    for path, image, label in zip(paths, images, labels, strict=True):
        name, data = written[path]
        assert classes[label] == name
        np.testing.assert_array_equal(image, decode_image(data, SIZE))


def test_an_image_already_the_size_is_pillows_own_decode(pets) -> None:
    daemon, written = pets
    with tether.Loader(daemon.url, dataset="pets", batch_size=4, image_size=SIZE,
                       decode="daemon") as loader:
        paths, images, _ = _collect(loader)
    exact = 0
    for path, image in zip(paths, images, strict=True):
        with PIL.open(daemon.folder / path) as original:
            if original.size == (SIZE[1], SIZE[0]):
                np.testing.assert_array_equal(image, np.asarray(original.convert("RGB")))
                exact += 1
    assert exact >= 10


def test_without_image_size_the_files_bytes_arrive(pets) -> None:
    daemon, written = pets
    with tether.Loader(daemon.url, dataset="pets", batch_size=16) as loader:
        batch = next(iter(loader))
    assert batch["image"].dtype == object
    for path, data in zip(batch["path"], batch["image"], strict=True):
        assert data == written[path][1]


@pytest.fixture
def damaged(tmp_path: Path, serve):
    written = write_folder(tmp_path / "pets", seed=1)
    bad = sorted(written)[5]
    data = (tmp_path / "pets" / bad).read_bytes()
    (tmp_path / "pets" / bad).write_bytes(data[:len(data) // 3])  # truncated
    return serve(tmp_path / "pets"), written, bad


@pytest.mark.parametrize("decode", ["loader", "daemon"])
def test_a_corrupt_image_is_an_error_that_names_it(damaged, decode: str) -> None:
    daemon, _, bad = damaged
    with tether.Loader(daemon.url, dataset="pets", batch_size=8, image_size=SIZE,
                       decode=decode, columns=["image", "path"]) as loader, \
            pytest.raises(DataCorrupted, match=bad.split("/")[1]):
        list(loader)


@pytest.mark.parametrize("decode", ["loader", "daemon"])
def test_skipped_corrupt_image_keeps_every_other_once_and_resume_exact(damaged,
                                                                       decode: str) -> None:
    daemon, written, bad = damaged
    options = dict(dataset="pets", batch_size=8, image_size=SIZE, decode=decode,
                   shuffle=True, seed=5, num_epochs=2, on_bad_image="skip",
                   shard_bytes=8 << 10)
    with tether.Loader(daemon.url, **options) as loader:
        batches = list(loader)
        assert loader.stats()["images_skipped"] == 2  # once per epoch
    per_epoch = -(-(len(written) - 1) // 8)
    assert len(batches) == 2 * per_epoch
    for epoch in (batches[:per_epoch], batches[per_epoch:]):
        paths = [p for b in epoch for p in b["path"]]
        assert sorted(paths) == sorted(set(written) - {bad})
        assert all(len(b["path"]) == 8 for b in epoch[:-1])
    state = state_after(daemon.url, 3, **options)
    with tether.Loader(daemon.url, **options) as resumed:
        resumed.load_state_dict(state)
        rest = list(resumed)
    assert [list(b["path"]) for b in rest] == [list(b["path"]) for b in batches[3:]]
    for got, want in zip(rest, batches[3:], strict=True):
        np.testing.assert_array_equal(got["image"], want["image"])


def test_skip_refused_with_several_processes(pets) -> None:
    daemon, _ = pets
    with pytest.raises(tether.RequestError, match="single process"):
        tether.Loader(daemon.url, dataset="pets", batch_size=4, image_size=SIZE,
                      on_bad_image="skip", process_index=0, process_count=2, seed=1)


@pytest.mark.parametrize(("decode", "budget_on"), [("loader", "loader"), ("daemon", "loader"),
                                                   ("daemon", "daemon")])
def test_an_image_past_the_pixel_budget_is_a_bad_image_on_either_side(
        tmp_path: Path, decode: str, budget_on: str) -> None:
    """Issue 23 (3): `Loader(max_image_pixels=...)` bounds the loader's decodes
    and, where the daemon decodes, the daemon's too (the smaller of the two);
    `tether serve --max-image-pixels` bounds the daemon's."""
    from ..conftest import DaemonProcess

    written = write_folder(tmp_path / "pets")
    PIL.new("RGB", (1500, 1000), (1, 2, 3)).save(tmp_path / "pets" / "cat" / "huge.webp",
                                                 lossless=True)
    args = ["--max-image-pixels", "1000000"] if budget_on == "daemon" else []
    loader_budget = {"max_image_pixels": 1_000_000} if budget_on == "loader" else {}
    with DaemonProcess([tmp_path / "pets"], tmp_path / "state", *args) as daemon, \
            tether.Loader(daemon.url, dataset="pets", batch_size=8, image_size=SIZE,
                          decode=decode, on_bad_image="skip", **loader_budget) as loader:
        paths = [p for batch in loader for p in batch["path"]]
        assert loader.stats()["images_skipped"] == 1
    assert sorted(paths) == sorted(written)  # all but the 1.5 MP one, each once
