"""WebDataset shards: a `.tar` file, or a folder of them, is one dataset with
one row per sample.

A sample is the consecutive members of a shard that share a key, the member's
path up to the first dot of its file name (`train/000012.jpg` and
`train/000012.cls` are sample `train/000012`); each extension is a column:

    jpg jpeg png webp bmp gif   image column (encoded; image_size= decodes)
    cls                         int64 (the class number as text in the tar)
    txt, json                   text
    anything else               bytes
    __key__                     text: the sample's key

A sample without a member of some column has a null there (text and bytes
None, a missing `cls` needs fill_null or null_masks). Opening reads only the
tar headers, once, into an index. Rows are then read a block of consecutive
samples at a time, one sequential read each, so the shuffle is windowed, as
for Parquet row groups: blocks are permuted and rows shuffled across a window
of many of them, each block read once per epoch.
"""

from __future__ import annotations

import os
import tarfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from tether.wire.errors import ColumnError
from tether.wire.plan import Layout
from tether.wire.ragged import BINARY, IMAGE, UTF8, Ragged

from .base import Column, Source
from .row_blocks import BlockCache, RowBlocks

IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp", "bmp", "gif"})
TEXT_EXTENSIONS = frozenset({"txt", "json"})
KEY = "__key__"
BLOCK_SAMPLES = 1024  # samples a block holds, at most...
BLOCK_BYTES = 64 << 20  # ...and about this many bytes of them


@dataclass
class _Sample:
    key: str
    members: dict[str, tuple[int, int]] = field(default_factory=dict)  # ext -> (offset, size)


def _split(name: str) -> tuple[str, str]:
    """(key, extension) of a member: the extension begins at the file name's first dot."""
    folder, _, base = name.rpartition("/")
    stem, dot, extension = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), extension.lower() if dot else ""


def index_shard(path: Path) -> list[_Sample]:
    """The samples of one tar, from its headers (the data is skipped)."""
    samples: list[_Sample] = []
    with tarfile.open(path, "r:") as tar:  # uncompressed: members are byte ranges
        for member in tar:
            if not member.isfile():
                continue
            key, extension = _split(member.name)
            if not extension:
                continue
            if not samples or samples[-1].key != key:
                samples.append(_Sample(key))
            samples[-1].members[extension] = (member.offset_data, member.size)
    return samples


def _column(extension: str, nulls: int, mean_bytes: int) -> Column:
    common = {"nulls": nulls, "mean_row_bytes": max(1, mean_bytes), "source_type": extension}
    last = extension.rsplit(".", 1)[-1]  # `seg.png`: an image too
    if last in IMAGE_EXTENSIONS:
        return Column(extension, np.dtype(np.uint8), (), kind=IMAGE, arrow=pa.binary(),
                      **common)
    if last in TEXT_EXTENSIONS:
        return Column(extension, np.dtype(np.uint8), (), kind=UTF8, arrow=pa.string(),
                      **common)
    if extension == "cls":
        return Column(extension, np.dtype("<i8"), (), nulls=nulls, source_type="cls",
                      arrow=pa.int64())
    return Column(extension, np.dtype(np.uint8), (), kind=BINARY, arrow=pa.binary(), **common)


class WebDatasetSource(Source):
    format = "webdataset"

    def __init__(self, name: str, paths: list[Path], cache_dir: Path) -> None:
        shards = [index_shard(path) for path in paths]
        self._samples = [(shard, sample) for shard, samples in enumerate(shards)
                         for sample in samples]
        self._blocks = RowBlocks(self._block_sizes(shards))
        columns = {KEY: Column(KEY, np.dtype(np.uint8), (), kind=UTF8, source_type="key",
                               mean_row_bytes=16)}
        for extension in sorted({e for _, s in self._samples for e in s.members}):
            sizes = [s.members[extension][1] for _, s in self._samples if extension in s.members]
            columns[extension] = _column(extension, len(self._samples) - len(sizes),
                                         int(np.mean(sizes)))
        super().__init__(name, paths, len(self._samples), columns)
        self._local = threading.local()  # an open file per thread (pread needs no seek)

    @staticmethod
    def _block_sizes(shards: list[list[_Sample]]) -> list[int]:
        """Blocks of consecutive samples of one shard, never across shards."""
        sizes = []
        for samples in shards:
            count = size = 0
            for sample in samples:
                count += 1
                size += sum(length for _, length in sample.members.values())
                if count == BLOCK_SAMPLES or size >= BLOCK_BYTES:
                    sizes.append(count)
                    count = size = 0
            if count:
                sizes.append(count)
        return sizes or [0]

    def layout(self, window_bytes: int) -> Layout:
        row_bytes = sum(c.row_bytes for c in self.columns.values()) or 1
        window_rows = max(1, int(window_bytes / row_bytes))
        return Layout(tuple(self._blocks.sizes), window_rows)

    def _file(self, shard: int):
        files = getattr(self._local, "files", None)
        if files is None:
            files = self._local.files = {}
        if shard not in files:
            files[shard] = open(self.paths[shard], "rb")  # noqa: SIM115 - kept per thread
        return files[shard]

    def _read_block(self, block: int) -> tuple[list[_Sample], bytes, int]:
        """The block's samples and, in one sequential read, the bytes they span."""
        first = int(self._blocks.starts[block])
        chosen = self._samples[first:first + self._blocks.sizes[block]]
        shard = chosen[0][0]
        spans = [span for _, sample in chosen for span in sample.members.values()]
        start = min(offset for offset, _ in spans)
        end = max(offset + size for offset, size in spans)
        data = os.pread(self._file(shard).fileno(), end - start, start)  # (no shared seek)
        return [sample for _, sample in chosen], data, start

    def _load(self, block: int, columns: Sequence[Column]) -> dict[str, np.ndarray | Ragged]:
        samples, data, base = self._read_block(block)
        out: dict[str, np.ndarray | Ragged] = {}
        for column in columns:
            if column.name == KEY:
                out[KEY] = Ragged.from_rows([s.key for s in samples], kind=UTF8)
                continue
            extension = column.path[0]  # (a mask column reads its column's members)
            values = [_member(data, base, s.members.get(extension)) for s in samples]
            if column.valid_of:
                out[column.name] = np.array([v is not None for v in values], dtype=bool)
            elif column.name == "cls":
                out[column.name] = _classes(column, values)
            else:
                empty = "" if column.kind == UTF8 else b""
                rows = [empty if v is None else v.decode() if column.kind == UTF8 else v
                        for v in values]
                out[column.name] = Ragged.from_rows(rows, kind=UTF8 if column.kind == UTF8
                                                    else BINARY)
        return out

    def take(self, rows: np.ndarray, columns: Sequence[Column],
             cache: BlockCache | None = None) -> dict[str, np.ndarray | Ragged]:
        names = tuple(c.name for c in columns)
        cache = cache or BlockCache()
        return self._blocks.gather(rows, lambda block: cache.get(
            (block, names), lambda: self._load(block, columns)))

    def filter_blocks(self, names: Sequence[str]) -> Iterator[pa.Table] | None:
        return None

    def row_name(self, row: int) -> str:
        shard, sample = self._samples[row]
        return f"sample {sample.key!r} of {self.paths[shard].name}"


def _member(data: bytes, base: int, span: tuple[int, int] | None) -> bytes | None:
    if span is None:
        return None
    offset, size = span
    return data[offset - base:offset - base + size]


def _classes(column: Column, values: list[bytes | None]) -> np.ndarray:
    out = np.empty(len(values), dtype=np.int64)
    for row, value in enumerate(values):
        if value is None:
            if column.fill is None:
                raise ColumnError(f"a sample has no {column.name!r} member; pass "
                                  f"fill_null={{{column.name!r}: ...}} or null_masks")
            out[row] = int(column.fill)
            continue
        try:
            out[row] = int(value.decode().strip())
        except ValueError:
            raise ColumnError(f"a {column.name!r} member holds {value[:40]!r}, not a class "
                              "number") from None
    return out
