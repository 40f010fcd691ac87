"""tether.wire.images.decode: real image files written by Pillow, decoded and checked per pixel."""

from __future__ import annotations

import io
import struct
import sys
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tether.wire.aligned import is_aligned
from tether.wire.errors import DataCorrupted
from tether.wire.ragged import Ragged

Image = pytest.importorskip("PIL.Image")
features = pytest.importorskip("PIL.features")

import tether.wire.images.decode as imaging  # noqa: E402
from tether.wire.images.decode import BadImage, decode_image, decode_images  # noqa: E402

SIZE = (24, 32)  # (H, W): not square on purpose
BILINEAR = Image.Resampling.BILINEAR


def noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def encode(img, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def save(tmp_path: Path, img, name: str, **options) -> tuple[Path, bytes]:
    path = tmp_path / name
    img.save(path, **options)
    return path, path.read_bytes()


def pillow_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def reference(img, size: tuple[int, int]) -> np.ndarray:
    """Cover-resize then centre-crop, from the spec, in floats (sizes chosen without ties)."""
    height, width = size
    scale = max(height / img.height, width / img.width)
    new_w, new_h = round(img.width * scale), round(img.height * scale)
    resized = img.convert("RGB").resize((new_w, new_h), BILINEAR)
    left, top = (new_w - width) // 2, (new_h - height) // 2
    return np.asarray(resized)[top:top + height, left:left + width]


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels (RGB, 8 bits) and has no pixel data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + \
            struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _p_with_transparency():
    img = Image.fromarray(noise(*SIZE)).convert("P")
    img.info["transparency"] = 5
    return img


MODES = {
    "RGB": lambda: Image.fromarray(noise(*SIZE)),
    "L": lambda: Image.fromarray(noise(*SIZE)[..., 0]),
    "P": lambda: Image.fromarray(noise(*SIZE)).convert("P"),
    "P-transparency": _p_with_transparency,
    "RGBA": lambda: Image.fromarray(np.dstack([noise(*SIZE), noise(*SIZE, seed=1)[..., :1]])),
    "LA": lambda: Image.fromarray(noise(*SIZE)[..., :2].copy(), "LA"),
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_png_at_target_size_is_pillows_own_decode(tmp_path, mode):
    path, data = save(tmp_path, MODES[mode](), f"{mode}.png")
    expected = pillow_rgb(path)
    assert expected.shape == (*SIZE, 3)
    for given in (data, memoryview(data), np.frombuffer(data, np.uint8)):
        np.testing.assert_array_equal(decode_image(given, SIZE, path.name), expected)
    np.testing.assert_array_equal(decode_image(data, None), expected)


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_jpeg_at_target_size_is_pillows_own_decode(tmp_path, mode):
    img = Image.fromarray(noise(*SIZE)).convert(mode)
    path, data = save(tmp_path, img, "a.jpg", quality=85)
    got = decode_image(data, SIZE, "a.jpg")
    assert got.dtype == np.uint8 and got.shape == (*SIZE, 3)
    np.testing.assert_array_equal(got, pillow_rgb(path))


@pytest.mark.parametrize("shape", [(40, 61), (77, 40), (13, 19), (100, 100)])
def test_resize_to_cover_then_centre_crop(shape):
    img = Image.fromarray(noise(*shape, seed=3))
    got = decode_image(encode(img, "PNG"), SIZE, "x.png")
    assert got.shape == (*SIZE, 3)
    np.testing.assert_array_equal(got, reference(img, SIZE))


def test_crop_offset_rounds_down_with_no_resize():
    # Height already matches, width 41 > 32: no resampling, 9 extra columns, 4 cut on the left.
    pixels = noise(24, 41, seed=4)
    got = decode_image(encode(Image.fromarray(pixels), "PNG"), SIZE)
    np.testing.assert_array_equal(got, pixels[:, 4:36])


def test_large_jpeg_downscale_is_close_to_a_full_decode_and_repeatable():
    # Shrinking 4x or more decodes at reduced DCT scale (draft): close to, not equal to,
    # resizing the full decode, and the same every time.
    y, x = np.mgrid[0:800, 0:1200]
    smooth = np.dstack([x * 255 // 1200, y * 255 // 800, (x + y) * 255 // 2000]).astype(np.uint8)
    data = encode(Image.fromarray(smooth), "JPEG", quality=90)
    got = decode_image(data, (100, 120), "big.jpg")
    assert got.shape == (100, 120, 3)
    full = reference(Image.open(io.BytesIO(data)), (100, 120))
    assert np.abs(got.astype(int) - full).mean() < 2
    np.testing.assert_array_equal(decode_image(data, (100, 120)), got)


def test_grey_is_equal_in_every_channel():
    img = Image.fromarray(noise(50, 70)[..., 0])
    for size in (SIZE, None):
        got = decode_image(encode(img, "PNG"), size)
        assert np.array_equal(got[..., 0], got[..., 1]) and np.array_equal(got[..., 1], got[..., 2])


def test_alpha_is_dropped_not_composited():
    rgba = np.zeros((*SIZE, 4), np.uint8)
    rgba[...] = (10, 20, 30, 0)  # fully transparent, colour kept under it
    got = decode_image(encode(Image.fromarray(rgba), "PNG"), SIZE)
    assert (got == np.array([10, 20, 30], np.uint8)).all()


def test_16_bit_grey_keeps_its_high_byte():
    grey = np.random.default_rng(5).integers(0, 65536, SIZE, dtype=np.uint16)
    got = decode_image(encode(Image.fromarray(grey), "PNG"), SIZE)
    expected = (grey >> 8).astype(np.uint8)
    for channel in range(3):
        np.testing.assert_array_equal(got[..., channel], expected)


def test_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (SIZE[1], SIZE[0]), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(data)).n_frames == 2
    assert (decode_image(data, SIZE, "a.gif") == np.array([255, 0, 0], np.uint8)).all()


def test_bmp(tmp_path):
    path, data = save(tmp_path, Image.fromarray(noise(*SIZE)), "a.bmp")
    np.testing.assert_array_equal(decode_image(data, SIZE), pillow_rgb(path))


@pytest.mark.skipif(not features.check("webp"), reason="this Pillow has no WebP support")
def test_webp(tmp_path):
    pixels = noise(*SIZE)
    path, data = save(tmp_path, Image.fromarray(pixels), "a.webp", lossless=True)
    np.testing.assert_array_equal(decode_image(data, SIZE), pixels)
    lossy = encode(Image.fromarray(noise(60, 90)), "WEBP", quality=80)
    np.testing.assert_array_equal(decode_image(lossy, SIZE),
                                  reference(Image.open(io.BytesIO(lossy)), SIZE))


def bad_files() -> dict[str, bytes]:
    img = Image.fromarray(noise(60, 80))
    jpeg, png = encode(img, "JPEG", quality=90), encode(img, "PNG")
    return {"cats/003.jpg": jpeg[:len(jpeg) // 2], "cats/004.png": png[:len(png) // 2],
            "noise.bin": np.random.default_rng(6).bytes(5000), "empty.jpg": b""}


@pytest.mark.parametrize("name", sorted(bad_files()))
@pytest.mark.parametrize("size", [SIZE, None])
def test_bad_files_raise_bad_image_naming_the_file(name, size):
    with pytest.raises(BadImage, match=f"image '{name}' cannot be decoded") as caught:
        decode_image(bad_files()[name], size, name)
    assert isinstance(caught.value, DataCorrupted)


def test_truncated_files_fail_rather_than_decode_grey():
    from PIL import ImageFile

    assert not ImageFile.LOAD_TRUNCATED_IMAGES  # Pillow's default, left alone
    for name, data in bad_files().items():
        if name.startswith("cats/"):
            with pytest.raises(BadImage, match="truncated"):
                decode_image(data, None, name)


def test_decompression_bomb_is_a_bad_image():
    with pytest.raises(BadImage, match="bomb.png"):
        decode_image(png_header(100_000, 100_000), SIZE, "bomb.png")  # past 2x Pillow's limit
    with warnings.catch_warnings():  # Pillow only warns between 1x and 2x its limit
        warnings.simplefilter("ignore")
        with pytest.raises(BadImage, match="more than"):
            decode_image(png_header(10_000, 10_000), SIZE, "big.png")
    small = encode(Image.fromarray(noise(*SIZE)), "PNG")
    with pytest.raises(BadImage, match="more than 100 pixels"):
        decode_image(small, SIZE, "small.png", max_pixels=100)


def good_files(n: int = 6) -> list[bytes]:
    shapes = [(24, 32), (40, 61), (77, 40), (50, 50), (31, 90), (120, 45)]
    return [encode(Image.fromarray(noise(*shapes[i % 6], seed=i)), "JPEG" if i % 2 else "PNG")
            for i in range(n)]


def test_decode_images_one_aligned_array_same_with_a_pool_and_a_ragged():
    blobs = good_files()
    names = [f"{i}.img" for i in range(len(blobs))]
    pixels, bad = decode_images(blobs, SIZE, names)
    assert pixels.shape == (len(blobs), *SIZE, 3) and pixels.dtype == np.uint8
    assert is_aligned(pixels) and not bad.any()
    for i, blob in enumerate(blobs):
        np.testing.assert_array_equal(pixels[i], decode_image(blob, SIZE))
    ragged = Ragged.from_rows(blobs, kind="binary")
    with ThreadPoolExecutor(2) as pool:
        for given, start in ((blobs, 0), (ragged, 0), (ragged[1:4], 1)):  # a slice: offsets > 0
            got, _ = decode_images(given, SIZE, names[start:start + len(given)], pool=pool)
            assert is_aligned(got)
            np.testing.assert_array_equal(got, pixels[start:start + len(given)])


@pytest.mark.parametrize("threads", [0, 2])
def test_decode_images_skip_bad_keeps_good_rows_in_order(threads):
    good, bad_ones = good_files(), bad_files()
    blobs = [good[0], bad_ones["cats/003.jpg"], good[1], good[2], bad_ones["empty.jpg"], good[3]]
    names = ["g0", "cats/003.jpg", "g1", "g2", "empty.jpg", "g3"]
    pool = ThreadPoolExecutor(threads) if threads else None
    try:
        pixels, bad = decode_images(Ragged.from_rows(blobs, kind="binary"), SIZE, names,
                                    skip_bad=True, pool=pool)
        assert bad.tolist() == [False, True, False, False, True, False]
        assert pixels.shape == (4, *SIZE, 3) and is_aligned(pixels)
        for row, blob in zip(pixels, good[:4], strict=True):
            np.testing.assert_array_equal(row, decode_image(blob, SIZE))
        with pytest.raises(BadImage, match="'cats/003.jpg'"):  # the first bad one, in order
            decode_images(blobs, SIZE, names, pool=pool)
    finally:
        if pool is not None:
            pool.shutdown()


def test_decode_images_edges():
    pixels, bad = decode_images([], SIZE, [])
    assert pixels.shape == (0, *SIZE, 3) and bad.shape == (0,)
    with pytest.raises(ValueError, match="names"):
        decode_images(good_files(2), SIZE, ["one"])


def test_image_decode_seconds_is_cheap_and_positive():
    seconds = imaging.image_decode_seconds(Ragged.from_rows(good_files(), kind="binary"), SIZE)
    assert 0 < seconds < 1
    assert imaging.image_decode_seconds([], SIZE) == 0.0


def test_without_pillow_import_works_and_decoding_says_what_to_install(monkeypatch):
    assert imaging.available()
    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    assert not imaging.available()
    with pytest.raises(ImportError, match="decoding images needs Pillow: pip install pillow"):
        decode_image(b"", SIZE)


@pytest.mark.parametrize(("fmt", "orientation"), [("JPEG", 6), ("JPEG", 3), ("PNG", 8),
                                                   ("WEBP", 5)])
def test_exif_orientation_is_applied_before_the_resize(fmt: str, orientation: int) -> None:
    """Phone photos arrive upright: pixels as Pillow's exif_transpose gives them,
    and the target size is of the upright picture."""
    from PIL import Image, ImageOps

    rng = np.random.default_rng(orientation)
    stored = Image.fromarray(rng.integers(0, 256, (40, 64, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    stored.save(out, fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
    data = out.getvalue()
    upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    assert np.array_equal(imaging.decode_image(data, None), upright)
    turned = orientation in (5, 6, 7, 8)
    assert upright.shape[:2] == ((64, 40) if turned else (40, 64))
    small = imaging.decode_image(data, (16, 10) if turned else (10, 16))
    assert small.shape == ((16, 10, 3) if turned else (10, 16, 3))  # no crop of a turned side
    reference = Image.fromarray(upright).resize(small.shape[1::-1], Image.Resampling.BILINEAR)
    assert np.abs(small.astype(int) - np.asarray(reference)).mean() < 8


# -- issue 23 (3): image bombs under Pillow's own 89 MP cap ---------------------

def webp_bomb(side: int) -> bytes:
    """A lossless WebP of one colour: a few dozen bytes for side x side pixels."""
    return encode(Image.new("RGB", (side, side), (9, 99, 199)), "WEBP", lossless=True)


def gif_screen(width: int, height: int) -> bytes:
    """A GIF whose logical screen is width x height, with one 1x1 frame in it."""
    header = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    frame = b"," + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return header + frame + b";"


def test_image_bombs_under_pillows_cap_are_refused_before_decoding():
    """A 7000x7000 WebP (49 MP, 2 KB) or 16-bit PNG, or a GIF whose screen is
    8000x8000 (64 MP), passed Pillow's 89 MP cap and each cost hundreds of MB a
    decode; the default budget, 40 MP, refuses them from their headers."""
    bombs = {"bomb.webp": webp_bomb(7000),
             "deep.png": encode(Image.new("I;16", (7000, 7000)), "PNG"),
             "screen.gif": gif_screen(8000, 8000)}
    assert len(bombs["bomb.webp"]) < 4000  # 2 KB for 147 MB of pixels
    for name, data in bombs.items():
        with pytest.raises(BadImage, match=rf"{name}.*more than 40,000,000 pixels"):
            decode_image(data, SIZE, name)
    small = webp_bomb(100)
    assert decode_image(small, None, "ok.webp").shape == (100, 100, 3)
    with pytest.raises(BadImage, match="more than 5,000 pixels"):
        decode_image(small, None, "ok.webp", max_pixels=5_000)


def test_only_the_documented_formats_are_opened():
    """A TIFF named .png was decoded: only JPEG, PNG, WebP, BMP and GIF are."""
    tiff = encode(Image.fromarray(noise(*SIZE)), "TIFF")
    with pytest.raises(BadImage, match="x.png.*not a JPEG, PNG, WebP, BMP or GIF"):
        decode_image(tiff, SIZE, "x.png")


def test_the_process_wide_budget_is_settable(monkeypatch):
    monkeypatch.setattr(imaging, "_max_pixels", imaging.MAX_PIXELS)
    imaging.set_max_pixels(1_000)
    with pytest.raises(BadImage, match="more than 1,000 pixels"):
        decode_image(webp_bomb(40), None, "x.webp")
    with pytest.raises(ValueError, match="positive"):
        imaging.set_max_pixels(0)


def test_decodes_at_once_share_one_memory_bound():
    """Threads cannot multiply a large image's cost: a decode waits until the
    bytes in progress leave it room; one larger than the bound runs alone."""
    import threading

    memory = imaging.DecodeMemory(100)
    order = []
    inside = threading.Event()
    release = threading.Event()

    def hold(nbytes: int, name: str) -> None:
        with memory.taking(nbytes):
            order.append(f"{name} in")
            inside.set()
            release.wait(5)
        order.append(f"{name} out")

    first = threading.Thread(target=hold, args=(80, "first"))
    first.start()
    inside.wait(5)
    second = threading.Thread(target=hold, args=(50, "second"))
    second.start()
    second.join(0.2)
    assert order == ["first in"] and memory.taken == 80  # 80 + 50 > 100: it waits
    release.set()
    first.join(5)
    second.join(5)
    assert order == ["first in", "first out", "second in", "second out"]
    with memory.taking(500):  # alone, past the bound: runs
        assert memory.taken == 500
    assert memory.taken == 0
