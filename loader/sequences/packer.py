"""The packing stage: rounds of sequences in, batches of packed rows out.

Each round (one batch of the stream) is packed on its own by
`tether.sequences.packing.pack_placed`, so after a restart it packs the same way and
the saved state, (round, packed rows handed out), resumes exactly.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..wire.aligned import aligned_empty
from .packing import METHODS, Batch, check_length, pack_placed


@dataclass
class PackerStats:
    rounds: int = 0  # rounds read
    sequences: int = 0  # sequences in the rounds read
    empty: int = 0  # of them, of length 0 (no tokens, not placed)
    split: int = 0  # of them, longer than L and so split into pieces
    pieces: int = 0  # pieces placed in the rounds read
    rows: int = 0  # packed rows emitted, empty filler rows included
    empty_rows: int = 0  # filler rows completing an epoch's last batch
    tokens: int = 0  # tokens in the rows emitted
    slots: int = 0  # rows emitted x L

    @property
    def fill(self) -> float:
        return self.tokens / self.slots if self.slots else 0.0

    @property
    def padding(self) -> float:
        """Share of the emitted slots that are padding."""
        return 1.0 - self.fill if self.slots else 0.0

    def as_dict(self) -> dict[str, Any]:
        names = ("rounds", "sequences", "empty", "split", "pieces", "rows", "empty_rows",
                 "tokens", "slots")
        return {**{n: getattr(self, n) for n in names}, "fill": self.fill,
                "padding": self.padding}


@dataclass
class _Round:
    token: Any
    epoch: int
    columns: Batch
    row_tokens: np.ndarray  # int64 [R]: tokens in each packed row
    rows: int
    next: int = 0  # next row to emit

    @property
    def remaining(self) -> int:
        return self.rows - self.next


@dataclass
class _Pending:
    rounds: deque[_Round] = field(default_factory=deque)
    rows: int = 0


class Packer:
    """Packs rounds of sequences and hands out batches of exactly `batch_rows` rows.

    `rounds` yields `(token, epoch, batch)`; `token` (JSON-able, opaque here)
    names the stream position BEFORE that round. Each round is packed on its
    own, so it packs the same way again after a restart. A batch may take
    rows from several rounds but never from two epochs: an epoch's last batch
    is completed with empty rows (`pad_value` tokens, segment ids and
    positions 0, other columns 0).

    `get_state()` is `{"round": token, "emitted": n}`: the round holding the
    last row handed out and how many of its rows have been handed out (its
    row count when a batch ended at its end). To resume, re-open the rounds
    at `token` and build `Packer(..., skip=n)`: the first round's first n
    packed rows are not handed out again. Until the first round is read the
    state is `{"round": None, "emitted": skip}` (resume where this Packer
    began); from then on, before the first batch, it is the first round's
    token and `skip`.
    """

    def __init__(self, rounds: Iterable[tuple[Any, int, Batch]], column: str, length: int,
                 batch_rows: int, pad_value: int = 0, skip: int = 0,
                 method: str = "best_fit") -> None:
        if int(batch_rows) != batch_rows or batch_rows < 1:
            raise ValueError(f"batch_rows must be a positive integer, not {batch_rows!r}")
        if int(skip) != skip or skip < 0:
            raise ValueError(f"skip must be a non-negative integer, not {skip!r}")
        if method not in METHODS:
            raise ValueError(f"packing method {method!r} is not one of {METHODS}")
        self._rounds = rounds
        self.column = column
        self.length = check_length(length)
        self.batch_rows = int(batch_rows)
        self.pad_value = pad_value
        self.method = method
        self._skip = int(skip)
        self._state: dict[str, Any] = {"round": None, "emitted": self._skip}
        self.stats = PackerStats()
        self.epoch: int | None = None  # epoch of the batch last handed out
        self._batches = self._generate()

    def get_state(self) -> dict[str, Any]:
        return dict(self._state)

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        return next(self._batches)

    def _generate(self) -> Iterator[Batch]:
        pending = _Pending()
        skip: int | None = self._skip
        for token, epoch, batch in self._rounds:
            if pending.rounds and pending.rounds[0].epoch != epoch:
                yield from self._end_of_epoch(pending)
            columns, placement = pack_placed(batch, self.column, self.length, self.pad_value,
                                       self.method)
            segment_ids = columns[f"{self.column}_segment_ids"]
            held = _Round(token, epoch, columns, np.count_nonzero(segment_ids, axis=1),
                          placement.rows)
            s = self.stats
            s.rounds += 1
            s.sequences += len(batch[self.column])
            s.empty += placement.empty
            s.split += placement.split
            s.pieces += placement.pieces
            if skip is not None:
                if skip > held.rows:
                    raise ValueError(f"skip={skip}, but the first round packs into only "
                                     f"{held.rows} rows: was it re-opened at another token?")
                held.next, skip = skip, None
                self._state = {"round": token, "emitted": held.next}
            if held.remaining:
                pending.rounds.append(held)
                pending.rows += held.remaining
            while pending.rows >= self.batch_rows:
                yield self._take(pending, self.batch_rows)
        if skip is not None and skip:
            raise ValueError(f"skip={skip}, but there were no rounds to skip")
        yield from self._end_of_epoch(pending)

    def _end_of_epoch(self, pending: _Pending) -> Iterator[Batch]:
        if pending.rows:
            yield self._take(pending, pending.rows)

    def _take(self, pending: _Pending, rows: int) -> Batch:
        """A batch of the next `rows` pending rows, completed to batch_rows."""
        head = pending.rounds[0]
        template = head.columns
        out = {name: aligned_empty((self.batch_rows, *v.shape[1:]), v.dtype)
               for name, v in template.items()}
        filled = tokens = 0
        while filled < rows:
            head = pending.rounds[0]
            n = min(rows - filled, head.remaining)
            for name, values in out.items():
                if name not in head.columns:
                    raise ValueError(f"round {head.token!r} lacks column {name!r}")
                values[filled:filled + n] = head.columns[name][head.next:head.next + n]
            tokens += int(head.row_tokens[head.next:head.next + n].sum())
            head.next += n
            filled += n
            pending.rows -= n
            self._state = {"round": head.token, "emitted": head.next}
            self.epoch = head.epoch
            if not head.remaining:
                pending.rounds.popleft()
        if filled < self.batch_rows:
            for name, values in out.items():
                values[filled:] = self.pad_value if name == self.column else 0
        s = self.stats
        s.rows += self.batch_rows
        s.empty_rows += self.batch_rows - filled
        s.tokens += tokens
        s.slots += self.batch_rows * self.length
        return out
