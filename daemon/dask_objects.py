"""`tether.serve(train=ddf)`: a Dask collection computed into the snapshot the
daemon serves, partition by partition, where its client is.

The daemon starts at once and lists the dataset as preparing
(tether.daemon.prepare.awaited) while a thread here has the partitions
computed by the caller's Dask client (a `distributed.Client`, local or
remote, or Dask's default scheduler), a window of them at a time and in
parallel, and appends each to the snapshot in order. This process holds at
most a window of computed partitions, the daemon none: it memory-maps the
finished file. The snapshot moves into place whole, or its `.error` file
says why not; the same graph (Dask's token) is the same snapshot, kept.

- A DataFrame becomes an Arrow IPC file: types and nulls as pyarrow converts
  pandas; a named index is kept as a column. A category column's
  partitions may each have their own categories (Dask's "known" categories
  are often only the first partition's): they are written as one growing
  dictionary (Arrow's deltas), as an Arrow file holds no other kind.
- A dict of arrays (Dask or numpy, rows first, one length), or a lone Dask
  array served as one column of its keyword's name, becomes a folder of
  `.npy` files written block after block.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .prepare.awaited import error_path

PROGRESS_SECONDS = 5.0  # without tqdm: a line this often
STOP_SECONDS = 10.0  # server.stop() waits this long for the partition being taken
STALE_SECONDS = 3600.0  # a staging folder untouched this long: its writer died


def is_dask(obj: Any) -> bool:
    """A Dask collection, or a dict holding one."""
    if isinstance(obj, Mapping):
        return any(map(is_dask, obj.values()))
    return type(obj).__module__.split(".")[0] == "dask"


def target_of(name: str, obj: Any, folder: Path) -> Path:
    """Where `obj`'s snapshot goes: named by Dask's token of its graph."""
    from dask.base import tokenize

    key = hashlib.sha256(f"{name}\0{tokenize(obj)}".encode()).hexdigest()[:32]
    return folder / key / (f"{name}.arrow" if _is_frame(obj) else name)


def _is_frame(obj: Any) -> bool:
    return type(obj).__name__ == "DataFrame"


def checked(name: str, obj: Any) -> Any:
    """`obj` as served (a Series as a one-column frame), or a TypeError now,
    before any work starts, for what cannot be served."""
    if not name.isidentifier():
        raise ValueError(f"tether.serve: {name!r} cannot name a dataset")
    if type(obj).__name__ == "Series" and hasattr(obj, "to_frame"):
        return obj.to_frame()
    arrays = obj.values() if isinstance(obj, Mapping) else [obj]
    if _is_frame(obj) or all(_plain_array(a) or _dask_array(a) for a in arrays):
        return obj
    raise TypeError(f"tether.serve({name}=...): a Dask DataFrame or Series, a Dask Array of "
                    f"numbers, dates or fixed-size text, or a dict of such arrays (Dask or "
                    f"numpy); not a {type(obj).__name__}")


def _dask_array(obj: Any) -> bool:
    return type(obj).__name__ == "Array" and hasattr(obj, "chunks") and \
        getattr(obj.dtype, "kind", "O") != "O"


def _plain_array(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "numpy"


class Materialization:
    """One collection being computed into its snapshot, in a thread."""

    def __init__(self, name: str, obj: Any, target: Path, client: Any) -> None:
        self.name, self.target = name, target
        self.error: BaseException | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(obj, client), daemon=True,
                                        name=f"tether-serve-{name}")
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _clean_stale(target.parent)
        error_path(target).unlink(missing_ok=True)  # an earlier failure: try again
        if not target.exists():
            self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Whether it is done (raises what failed)."""
        if self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                return False
        if self.error is not None:
            raise self.error
        return True

    def stop(self, deadline: float | None = None) -> None:
        """Stop between partitions; a partition still computing is left to
        finish on its own (the thread is a daemon's: exiting does not wait)."""
        self._stopping.set()
        if self._thread.is_alive():
            left = STOP_SECONDS if deadline is None else deadline - time.monotonic()
            self._thread.join(max(0.0, left))

    def _run(self, obj: Any, client: Any) -> None:
        staging = Path(tempfile.mkdtemp(dir=self.target.parent, prefix=".writing-"))
        try:
            if _is_frame(obj):
                _write_frame(obj, staging / self.target.name, self._computed(obj, client))
            else:
                _write_arrays(self.name, obj, staging / self.target.name,
                              lambda array: self._computed(array, client))
            _move_into_place(staging / self.target.name, self.target)
        except BaseException as exc:
            self.error = RuntimeError(f"tether.serve({self.name}=...): {exc}")
            if not self._stopping.is_set():  # (stopped: nothing is wrong with the data)
                _write_error(self.target, str(self.error))
                print(self.error, file=sys.stderr)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _computed(self, collection: Any, client: Any) -> Iterator[Any]:
        parts = list(collection.to_delayed().ravel() if hasattr(collection, "chunks")
                     else collection.to_delayed())
        with _Progress(self.name, len(parts)) as progress:
            for index, part in enumerate(_in_order(parts, client)):
                if self._stopping.is_set():
                    raise RuntimeError("stopped")
                yield index, len(parts), part
                progress.update()


def _clean_stale(folder: Path) -> None:
    """Staging folders left by a writer that died (a kernel restarted mid-way):
    nothing in them written for STALE_SECONDS. A live writer's are kept."""
    for staging in folder.glob(".writing-*"):
        try:
            newest = max((p.stat().st_mtime for p in staging.rglob("*")),
                         default=staging.stat().st_mtime)
        except OSError:
            continue  # (going away)
        if time.time() - newest > STALE_SECONDS:
            shutil.rmtree(staging, ignore_errors=True)


def _move_into_place(written: Path, target: Path) -> None:
    """Whole or not at all; another serve of the same collection that got
    there first made the same thing."""
    try:
        os.replace(written, target)
    except OSError:
        if not target.exists():
            raise


def _write_error(target: Path, text: str) -> None:
    """Why `target` was not made, for the daemon, written whole."""
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=".error-")
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(temporary, error_path(target))


def _in_order(parts: list[Any], client: Any) -> Iterator[Any]:
    """Each part computed, in order, a window of them running at once: on the
    client's workers (their results stay there until taken), or in windows
    on Dask's default scheduler. A failure names the partitions."""
    if client is None:
        import dask

        window = max(2, min(4, os.cpu_count() or 2))  # the caller holds a window
        for start in range(0, len(parts), window):
            with _naming(start, min(start + window, len(parts)), len(parts)):
                computed = dask.compute(*parts[start:start + window])
            yield from computed
        return
    window = 2 * max(1, sum(client.nthreads().values()))
    running: deque[Any] = deque()
    taken = 0
    try:
        for part in [*parts, *[None] * window]:  # (then the last window drains)
            if part is not None:
                running.append(client.compute(part))
            if running and (len(running) >= window or part is None):
                with _naming(taken, taken + 1, len(parts)):
                    result = running.popleft().result()
                taken += 1
                yield result
    finally:
        for future in running:
            future.cancel()


@contextmanager
def _naming(start: int, stop: int, count: int) -> Iterator[None]:
    """Which partitions (1-based) a failure came from."""
    try:
        yield
    except Exception as exc:
        which = f"partition {start + 1}" if stop == start + 1 else \
            f"partitions {start + 1}-{stop}"
        raise RuntimeError(f"computing {which} of {count} failed: "
                           f"{type(exc).__name__}: {exc}") from None


def _write_frame(ddf: Any, path: Path, computed: Iterator[tuple[int, int, Any]]) -> None:
    import pyarrow as pa

    keep_index = ddf.index.name is not None
    writer = schema = None
    categories: dict[str, dict] = {}  # a category column's, in order of first appearance
    with pa.OSFile(str(path), "wb") as sink:
        for index, count, frame in computed:
            if not len(frame) and writer is None:
                continue  # its columns may be typeless (all-None): the first with rows decides
            table = _wide_codes(pa.Table.from_pandas(_growing(frame, categories),
                                                     preserve_index=keep_index))
            if writer is None:
                schema = table.schema
                writer = pa.ipc.new_file(sink, schema, options=pa.ipc.IpcWriteOptions(
                    emit_dictionary_deltas=True))
            elif not table.schema.equals(schema, check_metadata=False):
                table = _conformed(table, schema, index, count)
            writer.write_table(table)
        if writer is None:  # no partitions: the columns, no rows
            writer = pa.ipc.new_file(sink, pa.Schema.from_pandas(ddf._meta,
                                                                 preserve_index=keep_index))
        writer.close()


def _wide_codes(table: Any) -> Any:
    """Category codes as int32 whatever pandas chose (int8 up to 127 categories,
    int16 past): the dictionary grows between partitions, its type may not."""
    import pyarrow as pa

    schema = pa.schema([field.with_type(pa.dictionary(pa.int32(), field.type.value_type))
                        if pa.types.is_dictionary(field.type) else field for field in table.schema],
                       metadata=table.schema.metadata)
    return table if schema.equals(table.schema) else table.cast(schema)


def _growing(frame: Any, categories: dict[str, dict]) -> Any:
    """`frame` with each category column's categories those of the earlier
    partitions followed by its new ones, so that its dictionary extends the
    last one written."""
    changed = {}
    for name in frame.columns:
        if str(frame[name].dtype) != "category":
            continue
        known = categories.setdefault(name, {})
        own = frame[name].cat.categories
        known.update(dict.fromkeys(own))
        if len(own) != len(known) or list(own) != list(known):
            changed[name] = frame[name].cat.set_categories(list(known))
    return frame.assign(**changed) if changed else frame


def _conformed(table: Any, schema: Any, index: int, count: int) -> Any:
    import pyarrow as pa

    try:
        return table.select(schema.names).cast(schema)
    except (KeyError, ValueError, pa.ArrowException) as exc:
        raise ValueError(f"partition {index + 1} of {count} has other columns or types than "
                         f"the first ({exc}); give every partition the same dtypes "
                         "(ddf.astype(...))") from None


def _write_arrays(name: str, obj: Any, folder: Path, computed: Any) -> None:
    import numpy as np

    arrays = dict(obj) if isinstance(obj, Mapping) else {name: obj}
    lengths = {key: _length(name, key, array) for key, array in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"the arrays have different lengths {lengths}; rows come first")
    folder.mkdir()
    for key, array in arrays.items():
        if not is_dask(array):
            np.save(folder / f"{key}.npy", np.ascontiguousarray(array))
            continue
        # Whole rows in each block, so that blocks are written one after another.
        array = array.rechunk({axis: -1 for axis in range(1, array.ndim)})
        with open(folder / f"{key}.npy", "wb") as out:
            np.lib.format.write_array_header_2_0(out, {
                "descr": np.lib.format.dtype_to_descr(array.dtype),
                "fortran_order": False, "shape": array.shape})
            for _, _, block in computed(array):
                out.write(np.ascontiguousarray(block, dtype=array.dtype).data)


def _length(name: str, key: str, array: Any) -> int:
    shape = getattr(array, "shape", ())
    if not shape:
        raise ValueError(f"{key!r} is not an array of rows")
    if shape[0] != shape[0]:  # NaN: Dask does not know its chunks' sizes
        raise ValueError(f"{key!r} has chunks of unknown size: serve "
                         f"{name}={key}.compute_chunk_sizes()")
    return int(shape[0])


class _Progress:
    """A tqdm bar when tqdm is there (a notebook's widget), else a line every
    few seconds on stderr."""

    def __init__(self, name: str, total: int) -> None:
        self._name, self._total, self._done = name, total, 0
        self._shown = time.monotonic()
        try:
            from tqdm.auto import tqdm
        except ImportError:
            self._bar = None
        else:
            self._bar = tqdm(total=total, unit="partition", desc=f"tether.serve {name}")

    def __enter__(self) -> _Progress:
        return self

    def update(self) -> None:
        self._done += 1
        if self._bar is not None:
            self._bar.update()
        elif time.monotonic() - self._shown > PROGRESS_SECONDS or self._done == self._total:
            self._shown = time.monotonic()
            print(f"tether.serve {self._name}: {self._done}/{self._total} partitions",
                  file=sys.stderr)

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.close()
