"""Plans one stream: its shard size and its HostPlan, checked against the dataset.

The order itself is tether.wire.plan's, shared with the loader; this module
decides only what depends on the dataset as the daemon sees it: the layout,
the shuffle window's size and how many rows a shard holds.
"""

from __future__ import annotations

from collections.abc import Sequence

from tether.wire import rpc
from tether.wire.errors import RequestError
from tether.wire.plan import HostPlan, Layout
from tether.wire.spec import StreamSpec

from ..sources import Column, Source

# Rows a Parquet shuffle window spans, in bytes of whole uncompressed rows. A
# stream's cache holds the window's row groups (its columns only), so this
# bounds the daemon's memory per stream besides the prefetch window.
DEFAULT_SHUFFLE_WINDOW_BYTES = 512 << 20


# A stream's window, whatever the client asks: bytes bound memory, the shard
# count bounds the work queued for tiny shards (found by tests/security/test_fuzzed_requests.py).
MAX_WINDOW_BYTES = 1 << 30
MAX_WINDOW_SHARDS = 256


def shard_rows(row_bytes: int, shard_bytes: int, batch_size: int) -> int:
    """Rows per shard: about `shard_bytes`, rounded down to whole batches so
    that most batches are views of one shard. (Shards carry the plan's order;
    their size never changes it.)"""
    rows = max(1, shard_bytes // max(row_bytes, 1))
    if rows >= batch_size:
        rows -= rows % batch_size
    return rows


def source_layout(source: Source, window_bytes: int) -> Layout:
    """The source's layout for a shuffle window of `window_bytes` (0: the default)."""
    return source.layout(window_bytes or DEFAULT_SHUFFLE_WINDOW_BYTES)


def plan_stream(spec: StreamSpec, source: Source, columns: Sequence[Column],
                fixed_shard_rows: int = 0, layout: Layout | None = None) -> HostPlan:
    """The stream's plan over `layout` (the source's own unless it is one part of
    a dataset on several daemons), or a RequestError that says what to change."""
    row_bytes = sum(c.row_bytes for c in columns)
    limit = rpc.MAX_SHARD_BYTES
    if row_bytes > limit:
        raise RequestError(f"one row of {[c.name for c in columns]} is {row_bytes} bytes, "
                           f"over the {limit >> 20} MiB frame limit")
    floor = shard_rows(row_bytes, rpc.MIN_SHARD_BYTES, 1)
    if fixed_shard_rows and fixed_shard_rows < floor:
        raise RequestError(f"shard_rows {fixed_shard_rows} is below the floor of {floor} rows "
                           f"(about {rpc.MIN_SHARD_BYTES} bytes a shard)")
    rows = fixed_shard_rows or shard_rows(row_bytes, spec.shard_bytes, spec.batch_size)
    if rows * row_bytes > limit:
        raise RequestError(f"shard_rows {rows} makes shards over the {limit >> 20} MiB "
                           "frame limit")
    if source.num_rows == 0:
        raise RequestError(f"dataset {source.name!r} has no rows")
    layout = layout or source_layout(source, spec.shuffle_window_bytes)
    if spec.start.row > layout.num_rows:
        raise RequestError(f"start row {spec.start.row} is past the end of {source.name!r} "
                           f"({layout.num_rows} rows)")
    plan = spec.plan_on(layout, rows)
    if plan.local_rows(spec.start.epoch + 1) == 0:
        per = f"{spec.process_count} processes x {spec.batch_size}" \
            if spec.process_count > 1 else f"batch_size {spec.batch_size}"
        raise RequestError(
            f"dataset {source.name!r} has {layout.num_rows} rows, fewer than one global "
            f"batch ({per} = {spec.global_batch} rows): lower batch_size or process_count"
            + ("" if spec.process_count > 1 else ", or keep the short batch (drop_last=False)")
        )
    return plan


def stream_window(plan: HostPlan, columns: Sequence[Column]) -> int:
    """The most shards a stream may have in flight, or a RequestError when one
    batch needs more than that."""
    row_bytes = sum(c.row_bytes for c in columns)
    window = min(MAX_WINDOW_SHARDS,
                 max(2, MAX_WINDOW_BYTES // max(plan.shard_rows * row_bytes, 1)))
    if plan.batch_window > window:
        raise RequestError(
            f"a batch of {plan.batch_size} rows needs {plan.batch_window} shards of "
            f"{plan.shard_rows} rows in flight, more than a stream's window ({window} shards, "
            f"at most {MAX_WINDOW_SHARDS} and {MAX_WINDOW_BYTES >> 20} MiB): raise shard_bytes "
            "or lower batch_size")
    return window
