"""What a stream asks for, once: a frozen, validated value.

The Loader builds one, its saved state carries one, and the daemon's
servicer rebuilds one from the wire: the same checks run on both sides
because they are the same code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from . import rpc
from .codecs import check_requested
from .errors import RequestError
from .plan import Cursor, HostPlan, Layout, Position
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

    def __post_init__(self) -> None:
        _check(bool(self.dataset), "name a dataset: dataset=...")
        _check(self.batch_size >= 1, f"batch_size must be at least 1, got {self.batch_size}")
        _check(self.num_epochs is None or self.num_epochs >= 1,
               f"num_epochs must be None (forever) or at least 1, got {self.num_epochs}")
        _check(self.process_count >= 1 and 0 <= self.process_index < self.process_count,
               f"need 0 <= process_index < process_count, got {self.process_index} "
               f"of {self.process_count}")
        check_requested(self.codec)
        _check(1 << 10 <= self.shard_bytes <= rpc.MAX_SHARD_BYTES,
               f"shard_bytes must be between 1 KiB and {rpc.MAX_SHARD_BYTES >> 20} MiB, "
               f"got {self.shard_bytes}")
        _check(0 <= self.seed < 2**64, f"seed must be a non-negative 64-bit integer, "
                                        f"got {self.seed}")
        _check(self.shuffle_window_bytes >= 0, "shuffle_window must not be negative")
        _check(min(self.start) >= 0, f"a start position is never negative, got {self.start}")
        _check(len(set(self.columns)) == len(self.columns),
               f"columns {list(self.columns)} name a column twice")
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "start", Position(*self.start))

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
                 parts: Sequence[Layout] = (), part_index: int = 0) -> pb.OpenStream:
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
        )
        if resume is not None:
            request.resume.CopyFrom(pb.Cursor(epoch=resume.epoch, sequence=resume.sequence))
        return request

    @classmethod
    def from_proto(cls, request: pb.OpenStream) -> StreamSpec:
        """Validate what a client sent; a RequestError says what is wrong."""
        return cls(
            dataset=request.dataset, batch_size=request.batch_size,
            columns=tuple(request.columns), shuffle=request.shuffle, seed=request.seed,
            shuffle_window_bytes=request.shuffle_window_bytes,
            num_epochs=request.num_epochs or None, process_index=request.process_index,
            process_count=request.process_count or 1, drop_last=request.drop_last,
            shard_bytes=request.shard_bytes or rpc.DEFAULT_SHARD_BYTES,
            codec=request.codec or "auto",
            start=Position(request.start.epoch, request.start.row),
        )

    # A saved state.

    def to_dict(self) -> dict[str, Any]:
        state = asdict(self)
        state["columns"] = list(self.columns)
        state["start"] = self.start._asdict()
        return state

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> StreamSpec:
        try:
            fields = {**state, "columns": tuple(state.get("columns", ())),
                      "start": Position(**state.get("start", {"epoch": 0, "row": 0}))}
            return cls(**fields)
        except TypeError as exc:
            raise RequestError(f"malformed stream request in the state: {exc}") from None
