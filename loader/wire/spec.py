"""What a stream asks for, once: a frozen, validated value.

The Loader builds one, its saved state carries one, and the daemon's
servicer rebuilds one from the wire: the same checks run on both sides
because they are the same code.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from . import rpc
from .codecs import check_requested
from .errors import RequestError
from .plan import MAX_ROWS, Cursor, HostPlan, Layout, Position
from .v1 import tether_pb2 as pb


def layout_to_proto(layout: Layout) -> pb.Layout:
    return pb.Layout(chunk_rows=layout.chunk_rows, window_rows=layout.window_rows)


def layout_from_proto(message: pb.Layout) -> Layout:
    _check(len(message.chunk_rows) > 0 and all(message.chunk_rows),
           "a layout needs at least one chunk, and no empty one")
    return Layout(tuple(message.chunk_rows), message.window_rows)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise RequestError(message)


# Bounds on what a request (or a saved state) may say. Epochs and counts stay
# below 2**63 so that every cursor after them still fits the wire's uint64.
MAX_COUNT = (1 << 63) - 1
MAX_SEED = (1 << 64) - 1


def _integer(name: str, value: Any, low: int, high: int) -> int:
    """`value` as an int in [low, high]; bools, floats and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise RequestError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    _check(low <= value <= high, f"{name} must be between {low} and {high}, got {value}")
    return value


def _flag(name: str, value: Any) -> bool:
    _check(isinstance(value, bool), f"{name} must be True or False, got {value!r}")
    return value


@dataclass(frozen=True)
class StreamSpec:
    """One stream's request: which rows, in what order, cut how.

    The row order depends on `dataset` (its version), `shuffle`, `seed` and
    `shuffle_window_bytes` only. `batch_size` and `process_count` decide how
    it is cut among processes; the rest decides how it travels.
    """

    dataset: str
    batch_size: int
    columns: tuple[str, ...] = ()
    shuffle: bool = False
    seed: int = 0
    shuffle_window_bytes: int = 0  # 0: the daemon's default
    num_epochs: int | None = 1  # None: forever
    process_index: int = 0
    process_count: int = 1
    drop_last: bool = False
    shard_bytes: int = rpc.DEFAULT_SHARD_BYTES
    codec: str = "auto"
    start: Position = field(default=Position(0, 0))
    # Images: decoded to uint8 [height, width, 3] (None: the files' bytes),
    # where ("auto", "loader", "daemon"), and what a corrupt one does.
    image_size: tuple[int, int] | None = None
    decode: str = "auto"
    on_bad_image: str = "error"
    # Only the rows this expression selects (tether.wire.filters); "" all.
    filter: str = ""
    # A read-only query over the served datasets, its result the dataset
    # (the daemon must run with --allow-sql); "" none.
    sql: str = ""

    def __post_init__(self) -> None:
        _check(isinstance(self.dataset, str) and bool(self.dataset),
               f"name a dataset: dataset=... (got {self.dataset!r})")
        checked = {
            "batch_size": _integer("batch_size", self.batch_size, 1, MAX_COUNT),
            "seed": _integer("seed (a non-negative 64-bit integer)", self.seed, 0, MAX_SEED),
            "shuffle_window_bytes": _integer("shuffle_window", self.shuffle_window_bytes, 0,
                                             MAX_SEED),
            "num_epochs": None if self.num_epochs is None else
            _integer("num_epochs (None: forever)", self.num_epochs, 1, MAX_COUNT),
            "process_count": _integer("process_count", self.process_count, 1, MAX_COUNT),
            "shard_bytes": _integer("shard_bytes", self.shard_bytes, 1 << 10,
                                    rpc.MAX_SHARD_BYTES),
            "shuffle": _flag("shuffle", self.shuffle),
            "drop_last": _flag("drop_last", self.drop_last),
        }
        checked["process_index"] = _integer("process_index", self.process_index, 0, MAX_COUNT)
        _check(checked["process_index"] < checked["process_count"],
               f"need 0 <= process_index < process_count, got {self.process_index} "
               f"of {self.process_count}")
        _check(isinstance(self.codec, str), f"codec must be a string, got {self.codec!r}")
        check_requested(self.codec)
        columns = self.columns
        _check(isinstance(columns, tuple | list) and all(isinstance(c, str) for c in columns),
               f"columns must be a list of column names, got {columns!r}")
        _check(len(set(columns)) == len(columns), f"columns {list(columns)} name a column twice")
        start = self.start
        _check(isinstance(start, tuple) and len(start) == 2,
               f"a start position is (epoch, row), got {start!r}")
        checked["start"] = Position(_integer("the start epoch", start[0], 0, MAX_COUNT),
                                   _integer("the start row", start[1], 0, MAX_ROWS))
        checked["columns"] = tuple(columns)
        checked["image_size"] = _image_size(self.image_size)
        _check(isinstance(self.filter, str), f"filter must be a string, got {self.filter!r:.80}")
        _check(isinstance(self.sql, str) and len(self.sql) <= MAX_SQL,
               f"sql must be a string of at most {MAX_SQL} characters")
        if self.filter:  # refused here with the position, before anything is opened
            from .filters import parse

            checked["filter"] = parse(self.filter).text
        _check(self.decode in DECODE_PLACES,
               f"decode must be one of {', '.join(DECODE_PLACES)}, got {self.decode!r}")
        _check(self.on_bad_image in ("error", "skip"),
               f"on_bad_image must be 'error' or 'skip', got {self.on_bad_image!r}")
        _check(self.on_bad_image == "error" or checked["process_count"] == 1,
               "on_bad_image='skip' needs a single process: a skipped image would give the "
               "processes unequal batches; remove the corrupt files instead (tether ls names "
               "them on the first epoch)")
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.process_count

    def starting_at(self, position: Position) -> StreamSpec:
        return replace(self, start=Position(*position))

    def host_plan(self, plan: pb.StreamPlan) -> HostPlan:
        """This request's plan as the daemon announced it: the loader's copy."""
        layout = layout_from_proto(plan.layout)
        _check(plan.shard_rows >= 1, "the daemon's plan has shards of 0 rows")
        return self.plan_on(layout, plan.shard_rows)

    def plan_on(self, layout: Layout, shard_rows: int) -> HostPlan:
        """This request's plan over a dataset of `layout`, in shards of `shard_rows`."""
        return HostPlan(layout, self.shuffle, self.seed, self.batch_size, shard_rows,
                        self.process_index, self.process_count, self.drop_last, self.start,
                        self.num_epochs)

    # The wire.

    def to_proto(self, *, resume: Cursor | None = None, initial_credits: int = 0,
                 accept_codecs: list[str] = (), accept_checksums: list[str] = (),
                 fingerprint: str = "", shard_rows: int = 0,
                 parts: Sequence[Layout] = (), part_index: int = 0,
                 decode_threads: int = 0, wants: bool = False) -> pb.OpenStream:
        """The OpenStream message; the keywords are this connection's own."""
        request = pb.OpenStream(
            dataset=self.dataset, columns=self.columns, batch_size=self.batch_size,
            shard_bytes=self.shard_bytes, shuffle=self.shuffle, seed=self.seed,
            shuffle_window_bytes=self.shuffle_window_bytes,
            num_epochs=self.num_epochs or 0, process_index=self.process_index,
            process_count=self.process_count, drop_last=self.drop_last, codec=self.codec,
            start=pb.Position(epoch=self.start.epoch, row=self.start.row),
            initial_credits=initial_credits, accept_codecs=accept_codecs,
            accept_checksums=accept_checksums, fingerprint=fingerprint, shard_rows=shard_rows,
            parts=[layout_to_proto(part) for part in parts], part_index=part_index,
            image_size=self.image_size or (), decode=self.decode, on_bad_image=self.on_bad_image,
            decode_threads=decode_threads, filter=self.filter, sql=self.sql, wants=wants,
        )
        if resume is not None:
            request.resume.CopyFrom(pb.Cursor(epoch=resume.epoch, sequence=resume.sequence))
        return request

    @classmethod
    def from_proto(cls, request: pb.OpenStream) -> StreamSpec:
        """Validate what a client sent; a RequestError says what is wrong."""
        if request.HasField("resume"):  # the cursor after it must fit the wire too
            _integer("the resume epoch", request.resume.epoch, 0, MAX_COUNT)
            _integer("the resume sequence", request.resume.sequence, 0, MAX_COUNT)
        return cls(
            dataset=request.dataset, batch_size=request.batch_size,
            columns=tuple(request.columns), shuffle=request.shuffle, seed=request.seed,
            shuffle_window_bytes=request.shuffle_window_bytes,
            num_epochs=request.num_epochs or None, process_index=request.process_index,
            process_count=request.process_count or 1, drop_last=request.drop_last,
            shard_bytes=request.shard_bytes or rpc.DEFAULT_SHARD_BYTES,
            codec=request.codec or "auto",
            start=Position(request.start.epoch, request.start.row),
            image_size=tuple(request.image_size) or None, decode=request.decode or "auto",
            on_bad_image=request.on_bad_image or "error", filter=request.filter,
            sql=request.sql,
        )

    # A saved state.

    def to_dict(self) -> dict[str, Any]:
        state = asdict(self)
        state["columns"] = list(self.columns)
        state["start"] = self.start._asdict()
        state["image_size"] = list(self.image_size) if self.image_size else None
        return state

    @classmethod
    def from_dict(cls, state: Any, optional: Sequence[str] = ()) -> StreamSpec:
        """The request of a saved state, checked as strictly as one from the wire.

        Every field must be there, but `optional` ones (taking their defaults)."""
        _check(isinstance(state, dict), f"the state's request is not a dict: {state!r:.80}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(state) - set(names), key=str)
        missing = [name for name in names if name not in state and name not in optional]
        _check(not unknown, f"the state's request has unknown fields {unknown}")
        _check(not missing, f"the state's request lacks {missing}")
        start = state.get("start", {"epoch": 0, "row": 0})
        _check(isinstance(start, dict) and sorted(start, key=str) == ["epoch", "row"],
               f"the state's start must be {{'epoch': ..., 'row': ...}}, got {start!r:.80}")
        _check(isinstance(state.get("columns", ()), list | tuple),
               f"the state's columns must be a list, got {state.get('columns')!r:.80}")
        return cls(**{**state, "start": Position(start["epoch"], start["row"])})


DECODE_PLACES = ("auto", "loader", "daemon")
MAX_SQL = 100_000  # characters of a remote query
MAX_IMAGE_SIDE = 1 << 14


def _image_size(size: Any) -> tuple[int, int] | None:
    if size is None:
        return None
    _check(isinstance(size, tuple | list) and len(size) == 2,
           f"image_size is (height, width), got {size!r:.80}")
    return (_integer("image height", size[0], 1, MAX_IMAGE_SIDE),
            _integer("image width", size[1], 1, MAX_IMAGE_SIDE))
