"""Red-team tests of ragged columns on the wire, image folders and manifests,
image decoding on either side, and strings from Arrow.

Eleven of them reproduced bugs found by this pass (fixed since: int64 offsets
that wrap, invalid UTF-8, shards that skip more rows than they have, pixels
of another size, whole shards of corrupt images on either side, a FIFO in an
image's place, oversized files and rows, a NUL in a manifest path); the rest
guard behaviour that already held.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

import tether
from tether.daemon.sources import arrow_types, discover
from tether.daemon.sources.arrow_columns import to_numpy
from tether.daemon.sources.images import ImageFiles
from tether.pipeline.decoder import check_shard, decode_shard
from tether.wire import framing, tensors
from tether.wire.errors import ColumnError, DataCorrupted, ProtocolError, TetherError
from tether.wire.images.decode import BadImage, decode_image
from tether.wire.ragged import Ragged
from tether.wire.v1 import tether_pb2 as pb

from .test_malicious_daemon_and_forged_requests import (
    fake_daemon,  # noqa: F401 (a fixture)
    shard_header,
)

PIL = pytest.importorskip("PIL.Image")
MiB = 1 << 20
TETHER_WIRE_ERRORS = (DataCorrupted, ProtocolError)

# --- forging ragged columns ----------------------------------------------------


def _encode(column: Ragged) -> tensors.EncodedTensor:
    return tensors.encode_column("t", column, "none", False, False)


def _payload(encoded: tensors.EncodedTensor) -> memoryview:
    return memoryview(b"".join(bytes(p) for p in encoded.place(0)))


def _with_lengths(values: np.ndarray, lengths: np.ndarray, kind: str = "ragged",
                  ) -> tuple[pb.TensorHeader, memoryview]:
    """A ragged column whose lengths are `lengths`, in their own dtype, as they are."""
    dummy = np.zeros(len(lengths), np.int64)
    dummy[0] = len(values)
    encoded = _encode(Ragged.from_lengths(values, dummy, kind))
    forged = tensors.encode("t", lengths, "none", False, False)
    encoded.header.lengths.CopyFrom(forged.header)
    encoded.lengths = forged.data
    return encoded.header, _payload(encoded)


def test_an_honest_ragged_column_round_trips() -> None:
    column = Ragged.from_rows([np.array([1, 2, 3]), np.array([], np.int64), np.array([7])])
    encoded = tensors.encode_column("t", column, "zstd", True, True)
    got = tensors.decode_column(encoded.header, _payload(encoded))
    assert [r.tolist() for r in got.to_list()] == [[1, 2, 3], [], [7]]


@pytest.mark.parametrize("lengths", [[2, 1], [4, 4], [0, 0]])
def test_lengths_that_do_not_add_up_are_a_protocol_error(lengths) -> None:
    header, payload = _with_lengths(np.arange(4), np.array(lengths, np.int64))
    with pytest.raises(ProtocolError, match="add up"):
        tensors.decode_column(header, payload)


def test_negative_lengths_in_a_signed_dtype_are_refused() -> None:
    header, payload = _with_lengths(np.arange(4), np.array([6, -2], np.int64))
    with pytest.raises(ProtocolError, match="outside 0"):
        tensors.decode_column(header, payload)


def test_a_huge_lengths_count_is_refused_before_allocating() -> None:
    encoded = _encode(Ragged.from_rows([np.arange(3)]))
    encoded.header.lengths.shape[:] = [1 << 40]
    encoded.header.lengths.raw_size = (1 << 40) * 8
    with pytest.raises(ProtocolError, match="frame limit"):
        tensors.check_column_header(encoded.header)


@pytest.mark.parametrize("attack", ["float", "bool", "nested", "kind", "2-D", "missing",
                                    "lengths without kind", "unknown kind"])
def test_forged_lengths_headers_are_refused(attack: str) -> None:
    encoded = _encode(Ragged.from_rows([np.arange(3), np.arange(2)]))
    header = encoded.header
    if attack == "float":
        header.lengths.dtype = "<f8"
        header.lengths.wire_dtype = ""
    elif attack == "bool":
        header.lengths.dtype = "|b1"
        header.lengths.wire_dtype = ""
    elif attack == "nested":
        inner = pb.TensorHeader()
        inner.CopyFrom(header.lengths)  # (not into itself: upb would crash)
        header.lengths.lengths.CopyFrom(inner)
    elif attack == "kind":
        header.lengths.kind = "ragged"
    elif attack == "2-D":
        header.lengths.shape[:] = [1, 2]
    elif attack == "missing":
        header.ClearField("lengths")
    elif attack == "lengths without kind":
        header.kind = ""
    else:
        header.kind = "tokens"
    with pytest.raises(ProtocolError):
        tensors.decode_column(header, _payload(encoded))


@pytest.mark.parametrize("dtype", ["<i4", "<f4"])
def test_text_must_be_bytes(dtype: str) -> None:
    encoded = _encode(Ragged.from_rows(["ab", "c"]))
    encoded.header.dtype = dtype
    with pytest.raises(ProtocolError, match=r"1-D bytes"):
        tensors.check_column_header(encoded.header)


def test_unsigned_lengths_that_wrap_are_a_protocol_error() -> None:
    header, payload = _with_lengths(np.arange(4), np.array([5, 2**64 - 1], np.uint64))
    with pytest.raises(ProtocolError):
        tensors.decode_column(header, payload)


def test_lengths_overflowing_int64_offsets_are_a_protocol_error() -> None:
    values = np.arange(4, dtype=np.int64)
    header, payload = _with_lengths(values, np.array([2**62] * 4 + [4], np.int64))
    with pytest.raises(ProtocolError):
        column = tensors.decode_column(header, payload)
        # Without the error: row 0 "holds" 2**62 values, row 4 repeats all of them.
        assert sum(len(r) for r in column.to_list()) == len(values)


def test_invalid_utf8_text_is_a_tether_error() -> None:
    bad = Ragged.from_lengths(np.frombuffer(b"ok\xff\xfe", np.uint8).copy(),
                              np.array([2, 2]), "utf8")
    encoded = _encode(bad)
    with pytest.raises(TETHER_WIRE_ERRORS):
        column = tensors.decode_column(encoded.header, _payload(encoded))
        column.to_list()  # what the loader's delivery does to every text column


# --- shard headers against the plan ------------------------------------------------

SHARD_ROWS = 4


def _plan(kind: str = "", dtype: str = "<i8", shape: tuple[int, ...] = ()) -> pb.StreamPlan:
    return pb.StreamPlan(shard_rows=SHARD_ROWS, columns=[
        pb.ColumnInfo(name="t", dtype=dtype, shape=shape, kind=kind)])


def _shard(encoded: tensors.EncodedTensor, rows: int, skipped=()) -> framing.Frame:
    payload = _payload(encoded)
    header = pb.ShardHeader(epoch=0, sequence=0, num_rows=rows, tensors=[encoded.header],
                            skipped_rows=skipped)
    return framing.decode(framing.encode_shard(header, [payload]))


def test_a_ragged_shard_whose_lengths_count_is_not_its_rows_is_refused() -> None:
    encoded = _encode(Ragged.from_rows([np.arange(3), np.arange(2)]))
    frame = _shard(encoded, 3)
    with pytest.raises(ProtocolError):
        check_shard(frame.shard, _plan("ragged"))
    with pytest.raises(ProtocolError, match="rows"):
        decode_shard(frame)


def test_a_ragged_shard_for_a_tensor_column_is_refused() -> None:
    frame = _shard(_encode(Ragged.from_rows([np.arange(3), np.arange(2)])), 2)
    with pytest.raises(ProtocolError, match="announced"):
        check_shard(frame.shard, _plan(""))


@pytest.mark.parametrize("shape", [(2, 5, 5, 3), (2, 8, 8, 4), (2, 8, 8), (3, 8, 8, 3)])
def test_image_pixels_of_another_shape_are_refused(shape) -> None:
    encoded = tensors.encode("t", np.zeros(shape, np.uint8), "none", False, False)
    frame = _shard(tensors.EncodedTensor(encoded.header, encoded.data), 2)
    with pytest.raises(ProtocolError, match="announced"):
        check_shard(frame.shard, _plan("image", "|u1", (8, 8, 3)))
    # Without image_size in the plan, no pixels at all.
    with pytest.raises(ProtocolError, match="announced"):
        check_shard(frame.shard, _plan("image", "|u1", ()))


@pytest.mark.parametrize("skipped", [(2, 2), (9,), (4,)])
def test_skipped_rows_out_of_range_or_twice_are_refused(skipped) -> None:
    frame = _shard(_encode(Ragged.from_rows([np.arange(3), np.arange(2)])), 2, skipped)
    with pytest.raises(ProtocolError, match="skips rows"):
        check_shard(frame.shard, _plan("ragged"))


def test_a_shard_cannot_skip_more_rows_than_a_shard_has() -> None:
    encoded = _encode(Ragged.from_rows([np.arange(1)] * 2))
    skipped = tuple(range(7))  # distinct, each below num_rows + len(skipped)
    frame = _shard(encoded, 2, skipped)
    with pytest.raises(ProtocolError):
        check_shard(frame.shard, _plan("ragged"))


# --- a daemon sending pixels of another size than asked ----------------------------


def test_pixels_must_be_the_image_size_the_loader_asked_for(fake_daemon) -> None:  # noqa: F811
    rows = 4

    def script(request, requests):
        plan = pb.StreamPlan(
            fingerprint="fake", num_rows=rows, shard_rows=rows, shards_per_epoch=1,
            batches_per_epoch=1, seed=0, layout=pb.Layout(chunk_rows=[rows]),
            columns=[pb.ColumnInfo(name="image", dtype="|u1", shape=[5, 5, 3], kind="image")])
        yield framing.encode_plan(plan)
        encoded = tensors.encode("image", np.zeros((rows, 5, 5, 3), np.uint8), "none",
                                 False, False)
        header = shard_header(0, 0, [encoded.header], rows, last=True)
        yield framing.encode_shard(header, [encoded.data])

    daemon = fake_daemon(script)
    with tether.Loader(daemon.url, "train", batch_size=rows, image_size=(8, 8),
                       retry=tether.RetryPolicy(timeout=0)) as loader, \
            pytest.raises(ProtocolError):
        for batch in loader:
            assert batch["image"].shape[1:] == (8, 8, 3)


# --- image decoding ------------------------------------------------------------------


def _png(width: int, height: int, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    PIL.new(mode, (width, height)).save(out, "PNG")
    return out.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims width x height (CRC fixed up)."""
    import struct
    import zlib

    data = bytearray(_png(1, 1))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _samples() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    pixels = PIL.fromarray(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8))
    out = {}
    for fmt in ("PNG", "JPEG", "GIF", "BMP", "WEBP"):
        buffer = io.BytesIO()
        pixels.save(buffer, fmt)
        out[fmt] = buffer.getvalue()
    return out


@pytest.mark.parametrize("blob", [
    _png_claiming(65535, 65535), _png_claiming(1 << 30, 1),
    b"\xff\xd8\xff\xc0\x00\x11\x08\xff\xff\xff\xff\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    b"\xff\xd9", b"", b"GIF89a", b"BM" + b"\xff" * 60, b"\x89PNG\r\n\x1a\n"],
    ids=["png-65535", "png-2**30", "jpeg-65535", "empty", "gif-header", "bmp-junk", "png-sig"])
def test_bombs_and_junk_are_bad_images(blob: bytes) -> None:
    with pytest.raises(BadImage, match="'x.png' cannot be decoded"):
        decode_image(blob, (8, 8), "x.png")


def test_damaged_files_of_every_format_are_bad_images_or_decode_as_pillow_does() -> None:
    """Never grey or shifted pixels without a word: a truncated file is a BadImage
    unless nothing was lost (a PNG cut inside its end marker); a flipped byte is
    a BadImage or exactly what Pillow itself decodes from those bytes."""
    rng = np.random.default_rng(1)
    outcomes = {"bad": 0, "decoded": 0}
    for fmt, data in _samples().items():
        intact = decode_image(data, None, fmt)
        for cut in (8, 20, len(data) // 2, len(data) - 3):
            try:
                pixels = decode_image(data[:cut], None, fmt)
            except BadImage:
                outcomes["bad"] += 1
                continue
            assert np.array_equal(pixels, intact), f"{fmt} cut at {cut} of {len(data)} bytes"
            outcomes["decoded"] += 1
        for flip in rng.integers(0, len(data), 12).tolist():
            blob = bytearray(data)
            blob[flip] ^= 0xFF
            with contextlib.suppress(BadImage):  # and nothing but BadImage escapes
                decode_image(bytes(blob), (8, 8), fmt)  # the resizing path
            try:
                pixels = decode_image(bytes(blob), None, fmt)
            except BadImage:
                outcomes["bad"] += 1
                continue
            reference = np.asarray(PIL.open(io.BytesIO(bytes(blob))).convert("RGB"))
            assert np.array_equal(pixels, reference), f"{fmt} with byte {flip} flipped"
            outcomes["decoded"] += 1
    assert outcomes["bad"] >= 20 and outcomes["decoded"] >= 20, outcomes  # both paths ran


def test_a_gif_of_many_frames_gives_its_first() -> None:
    frames = [PIL.new("RGB", (4, 4), (i, 0, 0)) for i in range(200)]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:])
    pixels = decode_image(out.getvalue(), None)
    assert pixels.shape == (4, 4, 3) and int(pixels[0, 0, 0]) == 0


# --- image folders and manifests on the daemon ----------------------------------------


def _write_png(path: Path, seed: int = 0, size: int = 24) -> bytes:
    rng = np.random.default_rng(seed)
    PIL.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path.read_bytes()


def _open_one(path: Path, tmp_path: Path, **kwargs):
    found = discover(path, **kwargs)
    assert len(found) == 1, found
    return found[0].open(tmp_path / "cache")


@pytest.mark.parametrize("bad", ["sub/../../outside.png", "./../outside.png", "//etc/passwd",
                                 "a/../../../../etc/passwd"])
def test_manifest_paths_out_of_the_folder_are_refused(tmp_path: Path, bad: str) -> None:
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    _write_png(tmp_path / "outside.png")
    manifest = folder / "labels.csv"
    pacsv.write_csv(pa.table({"path": [bad]}), manifest)
    with pytest.raises(ValueError, match="outside"):
        _open_one(manifest, tmp_path, images="path")


def test_a_manifest_path_through_a_linked_folder_out_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (tmp_path / "secret").mkdir()
    _write_png(tmp_path / "secret" / "a.png")
    (folder / "door").symlink_to(tmp_path / "secret")
    manifest = folder / "labels.csv"
    pacsv.write_csv(pa.table({"path": ["door/a.png"]}), manifest)
    with pytest.raises(ValueError, match="links out"):
        _open_one(manifest, tmp_path, images="path")


@pytest.mark.parametrize("bad", ["a\x00.png", "x" * 5000 + ".png", "fifo.png", "dir.png"])
def test_odd_manifest_paths_are_errors_that_name_the_row(tmp_path: Path, bad: str) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    _write_png(folder / "a.png")
    os.mkfifo(folder / "fifo.png")
    (folder / "dir.png").mkdir()
    manifest = folder / "labels.parquet"
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"path": ["a.png", bad]}), manifest)
    with pytest.raises((ValueError, OSError), match="labels.parquet row 1"):
        _open_one(manifest, tmp_path, images="path")


def test_a_class_folder_linked_to_itself_is_listed_once(tmp_path: Path) -> None:
    root = tmp_path / "pets"
    (root / "cat").mkdir(parents=True)
    (root / "dog").mkdir()
    _write_png(root / "cat" / "a.png")
    _write_png(root / "dog" / "b.png", 1)
    (root / "cat" / "loop").symlink_to(root / "cat")
    (root / "dog" / "up").symlink_to(root)
    source = _open_one(root, tmp_path)
    paths = source.take(np.arange(source.num_rows), [source.columns["path"]])["path"]
    assert sorted(paths.to_list()) == ["cat/a.png", "dog/b.png"]


def _same_stat_swap(path: Path, replace_with) -> ImageFiles:
    """ImageFiles over a 0-byte `path`, then `path` swapped for `replace_with(path)`
    given the same size (0) and modification time: the stat check cannot tell."""
    path.write_bytes(b"")
    files = ImageFiles([str(path)])
    mtime = files.mtimes[0]
    path.unlink()
    replace_with(path)
    os.utime(path, ns=(mtime, mtime), follow_symlinks=False)
    if path.is_symlink():  # stat follows the link: give its target the same time
        os.utime(path, ns=(mtime, mtime))
    assert files.unchanged(np.array([0]))
    return files


def test_a_file_swapped_for_a_link_to_dev_zero_does_not_read_forever(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(b"")
    files = ImageFiles([str(path)])
    path.unlink()
    path.symlink_to("/dev/zero")
    started = time.monotonic()
    with pytest.raises(OSError, match="changed size|no longer a plain file"):
        files.read(np.array([0]))
    assert time.monotonic() - started < 5


def test_a_file_swapped_for_a_fifo_does_not_hang(tmp_path: Path) -> None:
    files = _same_stat_swap(tmp_path / "a.png", os.mkfifo)
    outcome: list[object] = []

    def read() -> None:
        try:
            outcome.append(files.read(np.array([0])))
        except Exception as exc:  # noqa: BLE001
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(3)
    hung = reader.is_alive()
    if hung:  # unblock the reader so no thread is left behind
        fd = os.open(tmp_path / "a.png", os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        reader.join(5)
    assert not hung, "reading a FIFO in place of an image hung"
    assert isinstance(outcome[0], OSError)


def test_a_file_growing_or_swapped_for_a_folder_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    _write_png(path)
    files = ImageFiles([str(path)])
    with open(path, "ab") as f:
        f.write(b"more")
    with pytest.raises(OSError, match="changed size|no longer a plain file"):
        files.read(np.array([0]))
    path.unlink()
    path.mkdir()
    with pytest.raises(OSError):
        files.read(np.array([0]))


def test_an_image_file_over_the_frame_limit_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    with open(path, "wb") as f:
        f.truncate(80 * MiB)  # sparse: no disk used
    files = ImageFiles([str(path)])
    with pytest.raises((TetherError, ValueError, OSError), match="limit|too (big|large)"):
        files.read(np.array([0]))


# --- end to end: corrupt images, skipped, with real daemons -----------------------------

BAD = (2, 5)


@pytest.fixture
def flat_with_bad(tmp_path: Path, serve):
    """8 images, 2 of them not images, in shards of 1 row (shard_bytes=1024)."""
    folder = tmp_path / "flat"
    folder.mkdir()
    for i in range(8):
        path = folder / f"{i:02d}.png"
        if i in BAD:
            path.write_bytes(b"not a png " * 100)
        else:
            _write_png(path, i, 16)
    return serve(folder)


def _options(decode: str) -> dict:
    return dict(dataset="flat", batch_size=2, image_size=(8, 8), decode=decode,
                on_bad_image="skip", shard_bytes=1024, retry=tether.RetryPolicy(timeout=0))


def test_daemon_skip_of_a_shard_of_only_corrupt_images(flat_with_bad) -> None:
    with tether.Loader(flat_with_bad.url, **_options("daemon")) as loader:
        paths = [p for batch in loader for p in batch["path"]]
        assert loader.stats()["images_skipped"] == len(BAD)
    assert paths == [f"{i:02d}.png" for i in range(8) if i not in BAD]


def test_loader_skip_of_shards_of_only_corrupt_images_delivers_the_rest(flat_with_bad) -> None:
    with tether.Loader(flat_with_bad.url, **_options("loader")) as loader:
        paths = [p for batch in loader for p in batch["path"]]
        assert loader.stats()["images_skipped"] == len(BAD)
    assert paths == [f"{i:02d}.png" for i in range(8) if i not in BAD]


def test_loader_skip_of_a_whole_shard_keeps_the_position_exact(flat_with_bad) -> None:
    with tether.Loader(flat_with_bad.url, **_options("loader")) as loader:
        it = iter(loader)
        first, second = next(it), next(it)
        state = loader.state_dict()
    assert list(first["path"]) + list(second["path"]) == ["00.png", "01.png", "03.png",
                                                          "04.png"]
    with tether.Loader(flat_with_bad.url, **_options("loader")) as resumed:
        resumed.load_state_dict(state)
        rest = [p for batch in resumed for p in batch["path"]]
    assert rest == ["06.png", "07.png"]


def test_a_decompression_bomb_fails_its_stream_only_naming_the_file(tmp_path: Path,
                                                                     serve) -> None:
    folder = tmp_path / "flat"
    folder.mkdir()
    for i in range(4):
        _write_png(folder / f"{i:02d}.png", i, 16)
    (folder / "02.png").write_bytes(_png_claiming(65535, 65535))
    daemon = serve(folder)
    for decode in ("daemon", "loader"):
        options = dict(_options(decode), on_bad_image="error", columns=["image", "path"])
        with tether.Loader(daemon.url, **options) as loader, \
                pytest.raises(DataCorrupted, match="02.png"):
            list(loader)
    # The daemon still serves: with skip, every other image arrives.
    with tether.Loader(daemon.url, **dict(_options("daemon"), shard_bytes=1 << 20)) as loader:
        paths = [p for batch in loader for p in batch["path"]]
    assert paths == ["00.png", "01.png", "03.png"]


# --- strings from Arrow -------------------------------------------------------------------


@pytest.mark.parametrize("arrow_type", [pa.string(), pa.large_string(), pa.binary(),
                                        pa.large_binary(), "string_view", "binary_view"])
def test_sliced_and_view_strings_give_their_own_rows(arrow_type) -> None:
    texts = ["alpha", "", "γάμμα", "delta" * 50, "e"]
    if isinstance(arrow_type, str):
        if not hasattr(pa, arrow_type):
            pytest.skip(f"pyarrow without {arrow_type}")
        arrow_type = getattr(pa, arrow_type)()
    binary = pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type) or \
        "binary" in str(arrow_type)
    values = [t.encode() for t in texts] if binary else texts
    array = pa.array(values, arrow_type)
    column = describe(pa.field("s", arrow_type))
    for start, stop in ((0, 5), (1, 4), (3, 5), (2, 2)):
        got = to_numpy(array.slice(start, stop - start), column)
        assert got.to_list() == values[start:stop]
        assert tensors.decode_column(
            *(lambda e: (e.header, _payload(e)))(_encode(got))).to_list() == values[start:stop]


def test_sliced_token_lists_give_their_own_rows() -> None:
    array = pa.array([[1, 2], [], [3, 4, 5], [6]], pa.list_(pa.int32()))
    column = describe(pa.field("t", array.type))
    got = to_numpy(pa.chunked_array([array.slice(1, 3)]), column)
    assert [r.tolist() for r in got.to_list()] == [[], [3, 4, 5], [6]]


def describe(field: pa.Field):
    [column] = arrow_types.describe(field)
    return column


def test_null_strings_are_empty_rows_and_their_mask_says_so() -> None:
    """The loader makes them None from the mask (tether.columns.Delivery)."""
    array = pa.array(["a", None, "c"])
    column = describe(pa.field("s", array.type))
    assert to_numpy(array, column).to_list() == ["a", "", "c"]
    mask = replace(column, valid_of="s", kind="", dtype=np.dtype(bool))
    assert to_numpy(array, mask).tolist() == [True, False, True]
    assert to_numpy(array.slice(2), column).to_list() == ["c"]


def test_a_row_over_the_frame_limit_is_a_clear_data_error(tmp_path: Path, serve) -> None:
    import pyarrow.ipc as ipc

    folder = tmp_path / "data"
    folder.mkdir()
    noise = np.random.default_rng(0).integers(0, 256, 72 * MiB, dtype=np.uint8).tobytes()
    for name, table in (
            ("text", pa.table({"id": [0, 1, 2], "s": ["x", "a" * (70 * MiB), "y"]})),
            ("bytes", pa.table({"id": [0, 1, 2], "s": pa.array([b"x", noise, b"y"])}))):
        with ipc.new_file(str(folder / f"{name}.arrow"), table.schema) as writer:
            writer.write_table(table)
    del table, noise
    daemon = serve(folder)
    errors = []
    for name in ("text", "bytes"):
        with tether.Loader(daemon.url, dataset=name, batch_size=1,
                           retry=tether.RetryPolicy(timeout=0)) as loader, \
                pytest.raises(TetherError) as raised:
            list(loader)
        errors.append(raised.value)
    for error in errors:
        assert isinstance(error, DataCorrupted | ColumnError), repr(error)
        assert "'s'" in str(error) and "row 1" in str(error), repr(error)
