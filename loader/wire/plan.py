"""The plan of a stream: each epoch's row order, and the rows each process takes.

Both sides compute it from the same few numbers, so it lives here, in the
shared wire code. Three layers, each a pure function:

1. **The epoch's order** (`EpochOrder`): position -> dataset row, from the
   layout, shuffle, seed and epoch alone. Never from columns, batch size,
   shard size or prefetch. With shuffle it is global: a true permutation of
   every row for random-access formats; for formats stored in compressed
   chunks (Parquet row groups) the chunks are permuted and rows are shuffled
   across windows of many chunks, so each chunk is read once per epoch.
2. **The host's slice** (`HostPlan`): the order is cut into global batches
   of process_count x batch_size rows and process i takes rows
   [i*B, (i+1)*B) of each. Every process steps the same number of times; the
   rows after the last full global batch (fewer than one global batch) are
   dropped, except on a single process without drop_last, which gets a
   short last batch instead.
3. **The shards**: this process's rows of an epoch, cut into runs of
   shard_rows, numbered (epoch, sequence). Shards are the unit of transfer
   and of exactly-once accounting, not of order.

A stream may start mid-epoch at a global position (a multiple of the global
batch, the same on every process): the rest of that epoch is cut into
global batches from there. That is how a state saved by N processes
resumes on M.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .permutation import Permutation, derive_key


class Position(NamedTuple):
    """A place in the global order: the next row of epoch `epoch` is at `row`."""

    epoch: int
    row: int


class Cursor(NamedTuple):
    """A shard of a stream: shard `sequence` of this process in epoch `epoch`."""

    epoch: int
    sequence: int


@dataclass(frozen=True)
class Layout:
    """How a dataset stores its rows, as far as shuffling cares.

    `chunk_rows` are the rows of each storage chunk in storage order (one
    chunk for random-access formats); `window_rows` is how many rows a
    shuffle window spans (0: all of them, a true global permutation).
    """

    chunk_rows: tuple[int, ...]
    window_rows: int = 0
    num_rows: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "num_rows", sum(self.chunk_rows))  # asked for per shard

    @property
    def windowed(self) -> bool:
        return 0 < self.window_rows < self.num_rows and len(self.chunk_rows) > 1

    @classmethod
    def random_access(cls, num_rows: int) -> Layout:
        return cls((num_rows,))


class EpochOrder:
    """Position -> dataset row for one epoch."""

    def __init__(self, layout: Layout, shuffle: bool, seed: int, epoch: int) -> None:
        self.num_rows = layout.num_rows
        self.shuffle = shuffle
        self._key = derive_key(seed, epoch)
        # Unshuffled, every epoch after the first starts at another row, so that
        # the rows dropped after the last whole global batch are not always the
        # same ones. It depends on (rows, seed, epoch) alone, like the shuffle:
        # never on how the order is cut, so a position resumes on any layout.
        self.rotation = self._key % self.num_rows if epoch else 0
        self._windows: np.ndarray | None = None
        if shuffle and layout.windowed:
            self._plan_windows(layout)

    def _plan_windows(self, layout: Layout) -> None:
        chunk_rows = np.asarray(layout.chunk_rows, dtype=np.int64)
        count = len(chunk_rows)
        self._chunks = Permutation(count, derive_key(self._key, 1))[np.arange(count)]
        offsets = np.concatenate([[0], np.cumsum(chunk_rows)[:-1]])
        self._chunk_offsets = offsets[self._chunks]  # storage row of each permuted chunk
        sizes = chunk_rows[self._chunks]
        self._starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])  # their positions
        # A window is the chunks whose first position falls in one stretch of window_rows.
        first = np.flatnonzero(np.diff(self._starts // layout.window_rows, prepend=-1))
        self._windows = self._starts[first]
        self._window_sizes = np.diff(np.append(self._windows, self.num_rows))

    @property
    def num_windows(self) -> int:
        return 1 if self._windows is None else len(self._windows)

    def window_at(self, position: int) -> int:
        if self._windows is None:
            return 0
        return int(np.searchsorted(self._windows, position, side="right") - 1)

    def window_chunk_rows(self, window: int) -> np.ndarray:
        """The first dataset row of each chunk that `window` reads: what a reader
        loads ahead of the window (nothing when the order is not windowed)."""
        if self._windows is None:
            return np.zeros(0, dtype=np.int64)
        start = self._windows[window]
        first, last = np.searchsorted(self._starts, [start, start + self._window_sizes[window]])
        return self._chunk_offsets[first:last]

    def rows(self, positions: np.ndarray) -> np.ndarray:
        positions = np.asarray(positions, dtype=np.int64)
        if not self.shuffle:
            return (positions + self.rotation) % self.num_rows
        if self._windows is None:
            return Permutation(self.num_rows, self._key)[positions]
        window_of = np.searchsorted(self._windows, positions, side="right") - 1
        shuffled = np.empty_like(positions)
        for window in np.unique(window_of):
            where = window_of == window
            start, size = self._windows[window], self._window_sizes[window]
            within = Permutation(int(size), derive_key(self._key, 2, int(window)))
            shuffled[where] = start + within[positions[where] - start]
        chunk = np.searchsorted(self._starts, shuffled, side="right") - 1
        return self._chunk_offsets[chunk] + (shuffled - self._starts[chunk])


@dataclass(frozen=True)
class HostPlan:
    """One process's rows, batches and shards, epoch by epoch."""

    layout: Layout
    shuffle: bool
    seed: int
    batch_size: int
    shard_rows: int
    process_index: int = 0
    process_count: int = 1
    drop_last: bool = False
    start: Position = Position(0, 0)
    num_epochs: int | None = 1

    @property
    def num_rows(self) -> int:
        return self.layout.num_rows

    @property
    def global_batch(self) -> int:
        return self.process_count * self.batch_size

    @property
    def keeps_short_batch(self) -> bool:
        return self.process_count == 1 and not self.drop_last

    def _anchor(self, epoch: int) -> int:
        return self.start.row if epoch == self.start.epoch else 0

    def full_batches(self, epoch: int) -> int:
        """Global batches of `epoch` (this process's full batches)."""
        return (self.num_rows - self._anchor(epoch)) // self.global_batch

    def local_rows(self, epoch: int) -> int:
        if self.keeps_short_batch:
            return self.num_rows - self._anchor(epoch)
        return self.full_batches(epoch) * self.batch_size

    def batches(self, epoch: int) -> int:
        """Batches this process gets in `epoch`, a short last one included."""
        return -(-self.local_rows(epoch) // self.batch_size)

    @property
    def batch_window(self) -> int:
        """Shards a loader must hold to make a batch: those one batch can
        span, and one more to start the next (the least prefetch window)."""
        return -(-self.batch_size // self.shard_rows) + 1

    def dropped_rows(self, epoch: int) -> int:
        """Rows of the epoch no process receives (fewer than one global batch)."""
        if self.keeps_short_batch:
            return 0
        return (self.num_rows - self._anchor(epoch)) % self.global_batch

    def shards_in(self, epoch: int) -> int:
        return -(-self.local_rows(epoch) // self.shard_rows)  # integers: exact past 2**53

    def order(self, epoch: int) -> EpochOrder:
        return EpochOrder(self.layout, self.shuffle, self.seed, epoch)

    def global_positions(self, epoch: int, local: np.ndarray) -> np.ndarray:
        """Positions in the epoch's order of this process's `local` positions."""
        local = np.asarray(local, dtype=np.int64)
        steps, offset = np.divmod(local, self.batch_size)
        return (self._anchor(epoch) + steps * self.global_batch
                + self.process_index * self.batch_size + offset)

    def shard(self, cursor: Cursor, order: EpochOrder | None = None) -> np.ndarray:
        """The dataset rows of a shard, in the order they are delivered."""
        epoch, sequence = cursor
        first = sequence * self.shard_rows
        local = np.arange(first, min(first + self.shard_rows, self.local_rows(epoch)))
        order = order or self.order(epoch)
        return order.rows(self.global_positions(epoch, local))

    # Cursors: shard (epoch, sequence), in delivery order.

    def first(self) -> Cursor:
        return self.normalize(Cursor(self.start.epoch, 0))

    def normalize(self, cursor: Cursor) -> Cursor:
        """Carry a sequence past the end of its epoch into the next ones, in O(1).

        The start epoch may hold fewer shards than the others (it begins at
        `start.row`); every later epoch holds the same number.
        """
        epoch, sequence = cursor
        if epoch < self.start.epoch:
            raise ValueError(f"cursor {tuple(cursor)} lies before the stream's start, "
                             f"epoch {self.start.epoch}")
        if epoch == self.start.epoch:
            first = self.shards_in(epoch)
            if sequence < first:
                return Cursor(epoch, sequence)
            epoch, sequence = epoch + 1, sequence - first
        per_epoch = self.shards_in(epoch)
        if per_epoch:
            epoch, sequence = epoch + sequence // per_epoch, sequence % per_epoch
        return Cursor(epoch, sequence)

    def following(self, cursor: Cursor) -> Cursor:
        return self.normalize(Cursor(cursor.epoch, cursor.sequence + 1))

    def finished(self, cursor: Cursor) -> bool:
        """Whether a (normalized) cursor lies past the plan's end."""
        if cursor.epoch > self.start.epoch and self.shards_in(cursor.epoch) == 0:
            return True  # a dataset smaller than one global batch: nothing after the start
        return self.num_epochs is not None and cursor.epoch >= self.num_epochs

    def cursors(self, start: Cursor | None = None) -> Iterator[Cursor]:
        """Every cursor from `start` to the end; endless without num_epochs."""
        cursor = self.normalize(start) if start is not None else self.first()
        while not self.finished(cursor):
            yield cursor
            cursor = self.following(cursor)


class ShardTask(NamedTuple):
    """One shard to send: where it is in the stream, and its rows (None: the
    plan computes them from the cursor, on the encoder's thread)."""

    cursor: Cursor
    last_in_epoch: bool
    rows: np.ndarray | None = None


def shard_tasks(plan: HostPlan, start: Cursor | None = None) -> Iterator[ShardTask]:
    """A whole dataset's stream: every shard of the plan from `start`."""
    for cursor in plan.cursors(start):
        yield ShardTask(cursor, cursor.sequence == plan.shards_in(cursor.epoch) - 1)


def combine(layouts: Sequence[Layout]) -> Layout:
    """One dataset's layout from its parts' (served by several daemons), in order.

    Random-access parts shuffle as one true permutation. Where a part is
    windowed, so is the whole, by the smallest window; random-access parts
    then count as chunks a sixteenth of a window long, so they mix into
    every window like row groups do.
    """
    if sum(layout.num_rows for layout in layouts) >= MAX_ROWS:
        raise ValueError(f"the parts hold {sum(layout.num_rows for layout in layouts)} rows, "
                         f"more than a plan can address ({MAX_ROWS})")
    if len(layouts) == 1:
        return layouts[0]
    windows = [layout.window_rows for layout in layouts if layout.windowed]
    if not windows:
        return Layout(tuple(layout.num_rows for layout in layouts))
    window = min(windows)
    piece = max(1, window // 16)
    chunks: list[int] = []
    for layout in layouts:
        if len(layout.chunk_rows) > 1:
            chunks.extend(layout.chunk_rows)
        else:
            whole, rest = divmod(layout.num_rows, piece)
            if len(chunks) + whole > MAX_CHUNKS:
                raise ValueError(f"the parts make more than {MAX_CHUNKS} chunks of "
                                 f"{piece} rows; raise the shuffle window")
            chunks.extend([piece] * whole + ([rest] if rest else []))
    return Layout(tuple(chunks), window)


# What part_tasks yields while it scans without having found a shard yet.
SCANNING = object()

# Bounds on what a plan is built over (a request names other parts' layouts).
MAX_ROWS = 1 << 62
MAX_CHUNKS = 1 << 20

# Positions of the order scanned at once when finding one part's rows.
_SCAN_ROWS = 1 << 16


def part_tasks(plan: HostPlan, part: range, start: Cursor | None = None,
               ) -> Iterator[ShardTask | object]:
    """One part's stream: this process's rows that lie in `part` (rows of the
    whole dataset), in delivery order, cut into shards of plan.shard_rows.
    Rows are given relative to the part. Where each shard starts is known
    only by scanning the epoch's order, so a resume at `start` scans up to
    it (no reads; about 150 ns a row). Between blocks of the scan it yields
    SCANNING, so that the caller can stop a stream nobody waits for."""
    start = start or Cursor(plan.start.epoch, 0)
    epoch = start.epoch
    while not plan.finished(Cursor(epoch, 0)):
        held: ShardTask | None = None
        for task in _part_epoch(plan, part, epoch):
            if task is SCANNING:
                yield task
                continue
            if held is not None and held.cursor >= start:
                yield held
            held = task
        if held is not None and held.cursor >= start:
            yield held._replace(last_in_epoch=True)
        epoch += 1


def _part_epoch(plan: HostPlan, part: range, epoch: int) -> Iterator[ShardTask | object]:
    order, local_rows, size = plan.order(epoch), plan.local_rows(epoch), plan.shard_rows
    pending: list[np.ndarray] = []
    count = sequence = 0
    for first in range(0, local_rows, _SCAN_ROWS):
        local = np.arange(first, min(first + _SCAN_ROWS, local_rows))
        rows = order.rows(plan.global_positions(epoch, local))
        pending.append(rows[(rows >= part.start) & (rows < part.stop)] - part.start)
        count += len(pending[-1])
        yield SCANNING
        if count >= size:
            rows = np.concatenate(pending)
            whole = len(rows) // size * size
            for cut in range(0, whole, size):
                yield ShardTask(Cursor(epoch, sequence), False, rows[cut:cut + size])
                sequence += 1
            pending, count = [rows[whole:]], len(rows) - whole
    if count:
        yield ShardTask(Cursor(epoch, sequence), False, np.concatenate(pending))
