"""What a source is: a table of equal-length tensor columns, read by row index."""

from __future__ import annotations

import hashlib
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from tether.wire.errors import ColumnError
from tether.wire.plan import Layout
from tether.wire.ragged import TENSOR, Ragged
from tether.wire.tensors import WIRE_DTYPES
from tether.wire.v1 import tether_pb2 as pb

from .row_blocks import BlockCache

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class Column:
    """A column's rows: fixed-shape tensors (kind ""), or of varying length
    (tether.wire.ragged's kinds: dtype and shape are then one value's, and
    `take` returns a Ragged).

    Columns of Arrow sources also say how their values become the delivered
    ones (tether.daemon.sources.arrow_columns): which field they read (`reads`), what
    the values stand for, and, for one stream, what its nulls become."""

    name: str
    dtype: np.dtype | None  # None when the column cannot be served
    shape: tuple[int, ...] = ()
    unsupported: str = ""
    kind: str = TENSOR
    mean_row_bytes: int = 0  # of a variable-length column: for sizing shards
    reads: tuple[str, ...] = ()  # the Arrow field it reads, a struct's child by path; () name
    logical: str = ""  # "timestamp", "date", "category", ... (ColumnInfo.logical)
    source_type: str = ""  # the source's own type, for `tether ls`
    nulls: int = 0  # rows without a value in the source
    timezone: str = ""
    arrow: Any = field(default=None, compare=False, repr=False)  # its pa.DataType
    categories: tuple[str, ...] | None = field(default=None, compare=False, repr=False)
    # For one stream (tether.daemon.stream.columns): the value nulls become
    # (None: the kind's own, NaN for floats); a bool column's source column.
    fill: Any = None
    valid_of: str = ""

    @property
    def variable(self) -> bool:
        return self.kind != TENSOR

    @property
    def path(self) -> tuple[str, ...]:
        """The Arrow field this column reads: (top-level column, *struct children)."""
        return self.reads or (self.name,)

    @property
    def row_bytes(self) -> int:
        """Bytes a row takes (a mean, for a variable-length column)."""
        assert self.dtype is not None
        if self.variable:
            return max(1, self.mean_row_bytes)
        return math.prod(self.shape) * self.dtype.itemsize  # Python ints: no overflow

    def to_proto(self, categories: bool = False) -> pb.ColumnInfo:
        """The column as `tether ls` (a count of categories) and a stream's plan
        (`categories`: the vocabulary itself) describe it."""
        return pb.ColumnInfo(
            name=self.name, dtype=self.dtype.str if self.dtype is not None else "",
            shape=self.shape, unsupported=self.unsupported, kind=self.kind,
            mean_row_bytes=self.mean_row_bytes, source_type=self.source_type,
            null_count=self.nulls, logical=self.logical, timezone=self.timezone,
            categories=self.categories if categories and self.categories else (),
            category_count=len(self.categories or ()), valid_of=self.valid_of)


def numpy_column(name: str, dtype: np.dtype, shape: tuple[int, ...]) -> Column:
    """Column for numpy data, or an unsupported one saying why."""
    if dtype.fields or dtype.newbyteorder("<").str not in WIRE_DTYPES:
        return Column(name, None, shape, f"dtype {dtype} is not a bool, integer or float")
    return Column(name, dtype.newbyteorder("<") if dtype.itemsize > 1 else dtype, shape)


def fingerprint(paths: Sequence[Path], resolved: Sequence[str] | None = None) -> str:
    """Changes when any file's size, modification time, change time or inode
    changes: a rewrite that keeps the size and the modification time
    (`cp -p`, `rsync -t`, `tar x`) still changes the change time.

    `resolved`: the paths already resolved (a stream checks its files before
    every shard, and resolving walks each path's folders).
    """
    digest = hashlib.sha256()
    names = resolved if resolved is not None else [str(Path(p).resolve()) for p in paths]
    for path, name in zip(paths, names, strict=True):
        stat = os.stat(path)
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ctime_ns}\0"
                      f"{stat.st_ino}\n".encode())
    return digest.hexdigest()[:24]


class Source(ABC):
    """A dataset's rows. Subclasses are built as `cls(name, paths, cache_dir)`,
    open lazily, and must be safe to read from several threads at once."""

    # Rows are gathered from anywhere (a shuffled shard), so a format declares
    # how it stores them: `layout` says which reads are cheap.

    format: ClassVar[str]
    # An image folder's classes, images in each, and files it does not serve
    # (`tether ls` shows them); empty for every other source.
    classes: Sequence[str] = ()
    class_counts: Sequence[int] = ()
    skipped: str = ""
    # A snapshot's time (seconds since the epoch): a query's, a database table's,
    # a transform's (tether.daemon.sources.snapshots); 0 for files served as they are.
    snapshot_time: float = 0.0
    # The column of text that names each row's file (images), if any.
    row_name_column: str = ""
    # Columns of the files that are not served, each with why (a pandas index).
    left_out: Mapping[str, str] = {}
    _resolved: list[str] | None = None  # `paths` resolved, for `fingerprint`

    def __init__(self, name: str, paths: list[Path], num_rows: int,
                 columns: dict[str, Column]) -> None:
        self.name = name
        self.paths = paths
        self.num_rows = num_rows
        self.columns = columns

    @property
    def fingerprint(self) -> str:
        if self._resolved is None:  # once: the names stay, only sizes and times change
            self._resolved = [str(Path(p).resolve()) for p in self.paths]
        return fingerprint(self.paths, self._resolved)

    def unchanged(self, rows: np.ndarray, version: str) -> bool:
        """Whether the files these rows are read from are still at `version`
        (a fingerprint), checked before they are read. Memory-mapped formats
        check every file: one truncated under a read would kill the daemon
        (SIGBUS). A source of many plainly read files may check only the
        files of `rows`."""
        return self.fingerprint == version

    def select(self, names: Sequence[str]) -> list[Column]:
        """The columns a request asks for (all when empty), checked to be tensors."""
        if not names:
            names = list(self.columns)
        chosen = []
        for name in names:
            column = self.columns.get(name)
            if column is None:
                raise ColumnError(
                    f"dataset {self.name!r} has no column {name!r}; "
                    f"columns: {', '.join(self.columns)}"
                )
            if column.dtype is None:
                usable = [c.name for c in self.columns.values() if c.dtype is not None]
                raise ColumnError(
                    f"column {name!r} of dataset {self.name!r} cannot become a tensor "
                    f"({column.unsupported}); pass columns=[...] from: {', '.join(usable)}"
                )
            chosen.append(column)
        if len(set(names)) != len(names):
            raise ColumnError(f"columns {list(names)} name a column twice")
        return chosen

    def outdated(self) -> bool:
        """Whether the source must be opened again (besides its files' fingerprint
        changing): a source that checks only some files says so here."""
        return False

    def filter_blocks(self, names: Sequence[str]) -> Iterator[pa.Table] | None:
        """These columns as Arrow tables, block after block in row order, nulls
        kept (for evaluating a filter); None where the format has no such view."""
        return None

    def arrow_schema(self) -> pa.Schema | None:
        """The table's own Arrow schema (what `client.read` returns), its blocks
        read by `arrow_block`; None where the format has no Arrow view."""
        return None

    def table_blocks(self) -> int:
        """How many blocks `arrow_block(i, names)` reads, in row order."""
        return 0

    def filter_types(self) -> dict[str, Any]:
        """Arrow types of columns a filter can read but a tensor cannot hold
        (nullable ones); tether.daemon.stream.filtering types the rest."""
        return {}

    def row_name(self, row: int) -> str:
        """What to call a row in an error (an image source names its file)."""
        return f"row {row} of {self.name!r}"

    def layout(self, window_bytes: int) -> Layout:
        """How the rows are stored, for the shuffle: random-access sources are one
        chunk, shuffled by a true permutation whatever `window_bytes` is."""
        return Layout.random_access(self.num_rows)

    @abstractmethod
    def take(self, rows: np.ndarray, columns: Sequence[Column],
             cache: BlockCache | None = None) -> dict[str, np.ndarray | Ragged]:
        """These rows of `columns`, in this order, each an array of shape
        (len(rows), *column.shape), or a Ragged of len(rows) rows. `cache`
        keeps decoded blocks for the stream's next reads, where the format
        has blocks."""

    def read(self, start: int, stop: int,
             columns: Sequence[Column]) -> dict[str, np.ndarray | Ragged]:
        """Rows [start, stop) of `columns`."""
        return self.take(np.arange(start, stop), columns)

    def close(self) -> None:  # noqa: B027 - most sources hold nothing to close
        pass
