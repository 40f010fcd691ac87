"""`tether serve --transform NAME=MODULE:FUNCTION`: a dataset passed through
the owner's function, on the daemon, a chunk of rows at a time.

    # prep.py, in the folder tether serve runs in (or on PYTHONPATH)
    def clean(chunk: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        keep = chunk["label"] >= 0
        return {"x": chunk["x"][keep] / 255, "label": chunk["label"][keep]}

The function is the owner's code, imported at start (a missing module or
function stops `tether serve` with an error saying where it looked); the
remote side only names datasets and can never send code. A function may
drop rows, so its output is written once into a snapshot
(tether.daemon.sources.snapshots), keyed by the base dataset's fingerprint, the
target and the module file's bytes (editing prep.py makes a new one), and
served from it: shuffle, exactly-once and resume work unchanged.

Making the snapshot can take long and burn CPU, so it runs in the background
(the dataset is listed as preparing; `Catalog.get` waits a while for it) and
the function runs in worker processes (tether.daemon.prepare.workers: local
ones, or a Dask cluster's with --dask), a bounded number of chunks in
flight, so the daemon's RPCs and other streams go on and memory stays
bounded. Where the function ran changes nothing in the output, so the
snapshot's key does not name it.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from tether.wire.ragged import Ragged
from tether.wire.transforms import batch_format_of

from ..sources import Found, Source
from ..sources.arrow_columns import read_names
from ..sources.snapshots import SnapshotSource, snapshot, snapshot_key
from .workers import WorkerDied, workers

log = logging.getLogger(__name__)

CHUNK_ROWS = 65_536  # rows handed to the function at once, at most...
CHUNK_BYTES = 64 << 20  # ...and about this many bytes of them (wide rows: fewer)
IN_FLIGHT_PER_WORKER = 2  # chunks sent ahead of the writer: bounds memory


class TransformError(Exception):
    """The owner's function failed, or returned something that is not a table."""


class Preparing(Exception):  # noqa: N818 - a state, not a failure
    """The dataset's snapshot is being made in the background; `done` is set
    when it is made (or failed), and opening it again then gives the answer."""

    def __init__(self, message: str, done: threading.Event) -> None:
        super().__init__(message)
        self.done = done


# -- the owner's function ---------------------------------------------------

@dataclass(frozen=True)
class Function:
    target: str  # "module:function"
    file: str  # where the module was found, for messages
    digest: str  # of the module file's bytes: an edit makes a new snapshot


_resolved: dict[str, Function] = {}


def resolve(name: str, target: str) -> Function:
    """Import `target` ("module:function") now, so that a typo stops the daemon
    at start. Resolved once per daemon: an edit to the module takes effect
    (and makes a new snapshot) at the next start."""
    if target not in _resolved:
        module_name, _, function_name = target.partition(":")
        if not module_name or not function_name:
            raise ValueError(f"--transform {name}={target}: give MODULE:FUNCTION, e.g. "
                             f"--transform {name}=prep:clean for clean() in prep.py")
        module = _import(name, target, module_name)
        if not callable(getattr(module, function_name, None)):
            defined = sorted(k for k, v in vars(module).items()
                             if callable(v) and not k.startswith("_")
                             and getattr(v, "__module__", None) == module.__name__)
            raise ValueError(f"--transform {name}={target}: module {module_name!r} "
                             f"({module.__file__}) has no function {function_name!r}; it "
                             f"defines: {', '.join(defined) or 'none'}")
        file = getattr(module, "__file__", None) or ""
        digest = hashlib.sha256(Path(file).read_bytes()).hexdigest() if file else ""
        _resolved[target] = Function(target, file, digest)
    return _resolved[target]


def _import(name: str, target: str, module_name: str):
    # `tether serve` (a console script) does not put the current folder on the
    # path as `python -m` does; the issue promises both. The spawned workers
    # inherit this path.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name.split(".")[0] and exc.name != module_name:
            raise ValueError(f"--transform {name}={target}: importing {module_name!r} "
                             f"failed: {exc}") from None
        path = os.environ.get("PYTHONPATH", "")
        raise ValueError(f"--transform {name}={target}: no module {module_name!r} in the "
                         f"current folder ({os.getcwd()}) or on PYTHONPATH ({path or 'unset'}); "
                         f"put {module_name}.py there or set PYTHONPATH to its folder") from None
    except Exception as exc:  # its own code failed on import
        raise ValueError(f"--transform {name}={target}: importing {module_name!r} failed: "
                         f"{_exception(exc)}") from None


def _exception(exc: BaseException) -> str:
    """'ValueError: bad value (prep.py, line 5, in clean)': the type, message and
    the line of the owner's code that raised."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith("<frozen")]  # the import machinery's own
    where = (f" ({Path(frames[-1].filename).name}, line {frames[-1].lineno}, "
             f"in {frames[-1].name})" if frames else "")
    return f"{type(exc).__name__}: {exc}{where}"


# -- in a worker process ----------------------------------------------------

def apply_chunk(target: str, chunk: bytes) -> tuple[bool, bytes | str]:
    """Run the function on a chunk (Arrow IPC stream bytes), in the batch format
    it takes: (True, its output as Arrow IPC stream bytes) or (False, what went
    wrong). Runs in a worker; errors travel as text, since an owner's exception
    class may not survive pickling."""
    module_name, _, function_name = target.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
        out = function(as_batch_format(_read_ipc(chunk), batch_format_of(function)))
    except BaseException as exc:  # SystemExit and KeyboardInterrupt too: the owner's code
        return False, _exception(exc)
    try:
        batch = to_record_batch(out)
    except TransformError as exc:
        return False, str(exc)
    return True, _ipc(batch)


def _ipc(batch: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def _read_ipc(payload: bytes) -> pa.Table:
    return pa.ipc.open_stream(payload).read_all()


def as_batch_format(table: pa.Table, batch_format: str) -> object:
    """The rows as the function takes them, types and nulls intact: numpy
    arrays (ints with nulls as floats with NaN, text nulls as None, as
    pyarrow converts them), a pandas DataFrame, or the pyarrow Table."""
    if batch_format == "pyarrow":
        return table
    if batch_format == "pandas":
        return table.to_pandas()
    return {name: _numpy(table.column(name)) for name in table.column_names}


def _numpy(column: pa.ChunkedArray) -> np.ndarray:
    """A column as numpy: fixed-size lists as N-D arrays (as the stream has
    them), the rest as pyarrow converts them, nulls as NaN, NaT or None."""
    array = column.combine_chunks()
    if isinstance(array, pa.ExtensionArray):
        array = array.storage
    shape: list[int] = []
    flat = array
    while pa.types.is_fixed_size_list(flat.type) and not flat.null_count:
        shape.append(flat.type.list_size)
        flat = flat.flatten()
    if shape:
        return flat.to_numpy(zero_copy_only=False).reshape((len(array), *shape))
    return array.to_numpy(zero_copy_only=False)


def to_record_batch(out: object) -> pa.RecordBatch:
    """The function's output as a record batch, or a TransformError saying
    what a chunk must look like."""
    if isinstance(out, pa.Table):
        return out.combine_chunks().to_batches()[0] if out.num_rows else \
            pa.RecordBatch.from_pylist([], schema=out.schema)
    if isinstance(out, pa.RecordBatch):
        return out
    if type(out).__name__ == "DataFrame" and hasattr(out, "to_dict"):  # pandas, unimported
        try:
            return pa.RecordBatch.from_pandas(out, preserve_index=False)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise TransformError(f"its DataFrame cannot become Arrow columns: {exc}") from None
    if not isinstance(out, dict):
        raise TransformError(f"it returned a {type(out).__name__}, not a dict of numpy "
                             "arrays (column name -> one value per row), a pandas DataFrame "
                             "or a pyarrow Table")
    if not out:
        raise TransformError("it returned an empty dict: no columns")
    for key, values in out.items():
        if not isinstance(key, str):
            raise TransformError(f"it returned a column named {key!r}; names are str")
        if not isinstance(values, np.ndarray) or values.ndim == 0:
            raise TransformError(f"its column {key!r} is a {type(values).__name__}, not a "
                                 "numpy array of one value per row")
    lengths = {key: len(values) for key, values in out.items()}
    if len(set(lengths.values())) > 1:
        raise TransformError("its columns have different lengths ("
                             + ", ".join(f"{k}: {n}" for k, n in lengths.items())
                             + "); every column needs one value per row")
    return pa.RecordBatch.from_arrays([_to_arrow(k, v) for k, v in out.items()],
                                      names=list(out))


def _to_arrow(name: str, values: np.ndarray) -> pa.Array:
    kind = values.dtype.kind
    if kind in "biuf":  # N-D: nested fixed-size lists, as the Arrow sources read them
        array = pa.array(np.ascontiguousarray(values).reshape(-1))
        for size in reversed(values.shape[1:]):
            array = pa.FixedSizeListArray.from_arrays(array, size)
        return array
    if values.ndim != 1:
        raise TransformError(f"its column {name!r} is {values.ndim}-D of dtype "
                             f"{values.dtype}; only numbers may have more than one dimension")
    if kind in "Mm":  # dates, times, durations
        return pa.array(values)
    if kind == "U":
        return pa.array(values.tolist(), pa.string())
    if kind == "S":
        return pa.array(values.tolist(), pa.binary())
    if kind == "O":
        return _objects_to_arrow(name, values)
    raise TransformError(f"its column {name!r} has dtype {values.dtype}; return numbers, "
                         "bools, dates, str, bytes or 1-D numeric arrays per row")


def _objects_to_arrow(name: str, values: np.ndarray) -> pa.Array:
    items = values.tolist()
    present = [v for v in items if v is not None]  # None is a null
    if all(isinstance(v, str) for v in present):
        return pa.array(items, pa.string())
    if all(isinstance(v, bytes) for v in present):
        return pa.array(items, pa.binary())
    if all(isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype.kind in "biuf" for v in items):
        offsets = np.zeros(len(items) + 1, dtype=np.int32)
        np.cumsum([len(v) for v in items], out=offsets[1:])
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(items)))
    kinds = sorted({type(v).__name__ for v in items})
    raise TransformError(f"its column {name!r} is an object array of {', '.join(kinds)}; "
                         "each value must be a str, or each bytes, or each a 1-D numeric "
                         "array")


# -- in the daemon: the snapshot, made in the background --------------------

@dataclass(eq=False)
class _Job:
    """One snapshot being made. `settled`: it was found in the cache or its
    making began; `done`: it is there, or `error` says why not."""

    name: str
    rows: int
    settled: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    path: Path | None = None
    error: Exception | None = None
    started: float = field(default_factory=time.time)


_jobs: dict[tuple[str, str, str], _Job] = {}  # (cache folder, dataset, key): one per daemon
_jobs_lock = threading.Lock()


@dataclass(frozen=True)
class TransformReader:
    """`Found.reader` of a transformed dataset: opens its snapshot, starting it
    in the background (and raising Preparing) when there is none yet."""

    base: Found
    function: Function
    refresh: bool
    dask: str | None = None  # a Dask scheduler's address: its workers run the function

    @property
    def format(self) -> str:
        return f"{self.base.kind.format}+transform"

    def __call__(self, name: str, paths: list[Path], cache_dir: Path) -> Source:
        base = self.base.open(cache_dir)
        try:
            key = snapshot_key(base.fingerprint, self.function.target, self.function.digest)
        except BaseException:
            base.close()
            raise
        with _jobs_lock:
            job = _jobs.get((str(cache_dir), name, key))
            if job is None:
                job = _jobs[(str(cache_dir), name, key)] = _Job(name, base.num_rows)
                threading.Thread(target=self._make, args=(job, base, cache_dir, key),
                                 name=f"tether-transform-{name}", daemon=True).start()
                base = None  # the job closes it
        if base is not None:
            base.close()
        job.settled.wait()  # a snapshot in the cache is served at once
        if not job.done.is_set():
            since = time.strftime("%H:%M:%S", time.localtime(job.started))
            raise Preparing(f"preparing: transform {self.function.target} of {job.rows:,} rows, "
                            f"started {since}", job.done)
        if job.error is not None:
            raise job.error
        if job.path is None:
            raise TransformError(f"transform {self.function.target} ended without output")
        return SnapshotSource(name, job.path, list(self.base.paths), self.format)

    def _make(self, job: _Job, base: Source, cache_dir: Path, key: str) -> None:
        try:
            # Its own name: a --sql dataset of this name has a snapshot too, and each
            # would remove the other's as an earlier version of itself.
            job.path = snapshot(cache_dir, f"{job.name}.transform", key,
                                lambda: self._batches(job, base), self.refresh)
        except BaseException as exc:  # (a worker's SystemExit must not leave no error)
            job.error = exc if isinstance(exc, TransformError) else TransformError(
                f"transform {self.function.target}: {_exception(exc)}")
            log.warning("cannot serve %s: %s", job.name, job.error)
        finally:
            base.close()
            job.settled.set()
            job.done.set()

    def _batches(self, job: _Job, base: Source) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
        job.settled.set()  # not in the cache: made now, in the background
        chunks = _run(base, self.function, self.dask)
        _, first = next(chunks)  # the schema is the first chunk's
        return first.schema, _conform(first, chunks, self.function.target)


def _conform(first: pa.RecordBatch, rest: Iterator[tuple[str, pa.RecordBatch]],
             target: str) -> Iterator[pa.RecordBatch]:
    yield first
    for rows, batch in rest:
        if batch.schema.equals(first.schema):
            yield batch
            continue
        try:
            yield batch.select(first.schema.names).cast(first.schema)
        except (KeyError, ValueError, pa.ArrowException):
            raise TransformError(
                f"transform {target} returned other columns on rows {rows} than on the "
                f"first chunk: {_columns(batch.schema)}, after {_columns(first.schema)}; "
                "every chunk needs the same columns and types") from None


def _columns(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name} ({f.type})" for f in schema)


def _run(base: Source, function: Function,
         dask: str | None) -> Iterator[tuple[str, pa.RecordBatch]]:
    """The function's output over `base`, chunk by chunk, in order, with the
    rows each came from; at most IN_FLIGHT_PER_WORKER chunks a worker are
    read ahead of the writer."""
    target = function.target
    with workers(dask, target, function.file) as running:
        pending: deque[tuple[int, int, Any]] = deque()
        for start, stop, chunk in _chunks(base):
            try:
                pending.append((start, stop, running.submit(apply_chunk, target, chunk)))
            except RuntimeError:  # the interpreter is exiting: no new work
                raise TransformError(f"transform {target} stopped before rows {start}-"
                                     f"{stop - 1}: the daemon is stopping") from None
            del chunk  # the worker has its copy
            if len(pending) >= running.slots * IN_FLIGHT_PER_WORKER:
                yield _result(*pending.popleft(), target)
        while pending:
            yield _result(*pending.popleft(), target)


def _chunks(base: Source) -> Iterator[tuple[int, int, bytes]]:
    """`base`'s rows in chunks of at most CHUNK_ROWS rows and about CHUNK_BYTES,
    as Arrow IPC: its Arrow columns as they are (nulls and types intact) where
    the source has them, else its columns as the stream reads them."""
    columns = [c for c in base.columns.values() if c.dtype is not None]
    row_bytes = sum(c.row_bytes for c in columns) or 1
    step = max(1, min(CHUNK_ROWS, CHUNK_BYTES // row_bytes))
    blocks = base.filter_blocks(read_names(columns))
    if blocks is None:
        for start in range(0, base.num_rows, step):
            stop = min(start + step, base.num_rows)
            read = base.read(start, stop, columns)
            yield start, stop, _ipc(to_record_batch({c.name: _plain(read[c.name])
                                                     for c in columns}))
        if not base.num_rows:  # one empty chunk, for the schema
            yield 0, 0, _ipc(to_record_batch({c.name: _plain(base.read(0, 0, [c])[c.name])
                                              for c in columns}))
        return
    yield from _rechunked(blocks, step)


def _rechunked(blocks: Iterator[pa.Table], step: int) -> Iterator[tuple[int, int, bytes]]:
    """Blocks (row groups, record batches) cut and joined into chunks of `step` rows."""
    held: list[pa.Table] = []
    start = rows = 0
    schema = None
    for block in blocks:
        schema = block.schema
        held.append(block)
        rows += block.num_rows
        while rows >= step:
            joined = pa.concat_tables(held)
            yield start, start + step, _ipc(_one_batch(joined.slice(0, step)))
            held, rows, start = [joined.slice(step)], rows - step, start + step
    if rows or start == 0:  # the rest, or one empty chunk for the schema
        table = pa.concat_tables(held) if held else pa.table({}) if schema is None \
            else schema.empty_table()
        yield start, start + rows, _ipc(_one_batch(table))


def _one_batch(table: pa.Table) -> pa.RecordBatch:
    batches = table.combine_chunks().to_batches()
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=table.schema)


def _plain(values: np.ndarray | Ragged) -> np.ndarray:
    """A column as the function sees it: text, bytes and lists as object arrays."""
    return values.to_numpy() if isinstance(values, Ragged) else values


def _result(start: int, stop: int, future: Any, target: str) -> tuple[str, pa.RecordBatch]:
    rows = f"{start}-{stop - 1}" if stop > start else f"{start}-{start} (none)"
    try:
        ok, payload = future.result()
    except WorkerDied:
        raise TransformError(f"transform {target}: its worker process died on rows {rows} "
                             "(a crash, or killed for memory)") from None
    if not ok:
        raise TransformError(f"transform {target} failed on rows {rows}: {payload}")
    return rows, pa.ipc.open_stream(payload).read_next_batch()


def transformed(found: Found, target: str, refresh: bool = False,
                dask: str | None = None) -> Found:
    """`found` (a dataset named NAME) as --transform NAME=TARGET serves it: the
    same files, read through the owner's function into a snapshot."""
    function = resolve(found.name, target)
    return Found(found.name, list(found.paths), found.root,
                 TransformReader(found, function, refresh, dask),
                 origin=f"--transform {found.name}={target}")
