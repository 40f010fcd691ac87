"""A loader's own query over the served datasets (`Loader(sql=...)`, allowed
by `tether serve --allow-sql`): read-only, the served datasets and nothing
else, with a time and a memory limit.

The query comes from the network, so it runs in a DuckDB that cannot reach
anything but the tables handed to it:

- one statement, and a SELECT (`WITH ... SELECT`, `FROM t`, `VALUES` are
  SELECTs too), as DuckDB's own parser classifies it: no COPY, ATTACH,
  INSTALL/LOAD, SET, PRAGMA, CREATE, ...;
- an in-memory DuckDB with `enable_external_access=false` (no file or
  network access: read_csv('/etc/passwd'), read_parquet, glob, COPY TO,
  ATTACH all fail), no extension installed or loaded, no Python variables
  visible as tables, no spilling to disk, and its configuration locked
  before the query is parsed, so the query cannot undo any of it;
- the served datasets reach it as pyarrow datasets registered by the
  daemon (pyarrow opens the files, DuckDB never does): Parquet, CSV, Arrow
  and Feather files, and the snapshots of database tables and queries,
  each a table named by its dataset (quoted: `SELECT * FROM "shop.items"`);
- a time limit (the query is interrupted) and DuckDB's memory limit, and
  the query runs in a worker process whose writable memory the operating
  system bounds (RLIMIT_DATA: the memory limit and 512 MiB): memory DuckDB
  does not count (one huge string, `repeat(...)`) fails the query there, and
  the daemon's own memory is untouched. The memory limit is taken from the
  daemon's budget (`--max-memory`) while the query runs, and is at most half
  of it.

The result is a snapshot (snapshots.py) keyed by the query and the
fingerprints of the files it reads, so the same query over the same data
is the same rows in the same order: a resumed stream finds them again.

>>> source = run_remote_query('SELECT id, x FROM train WHERE label = 3', found, cache_dir)
>>> source.num_rows
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from tether.wire.errors import Busy, RequestError
from tether.wire.sizes import parse_size

from ..private import keep_newest
from ..sources import Found
from ..sources.base import fingerprint
from ..sources.snapshots import SnapshotSource, snapshot, snapshot_key
from .sql_datasets import FILE_FORMATS, THREADS, arrow_dataset, one_line, reader
from .workers import LocalWorkers, WorkerDied

TIME_LIMIT_S = 60.0
MEMORY_LIMIT = "1GB"
# A query process's writable memory beyond DuckDB's limit (RLIMIT_DATA: heap
# and private mappings, not reserved address space, which a cap on would break
# thread creation): the interpreter, pyarrow and DuckDB start with about 150 MB.
PROCESS_OVERHEAD = 512 << 20
GRACE_S = 10.0  # past its time limit, a query not yet interrupted ends with its process
# What one loader's query may take of the daemon beside DuckDB's memory limit:
# its result on disk, one batch of it in memory (rows come a few thousand at
# a time, so wide rows stay small), and a place among the queries running.
MAX_RESULT_BYTES = 4 << 30
MAX_BATCH_BYTES = 256 << 20
BATCH_ROWS = 4096
MAX_RUNNING = 2
KEPT_RESULTS = 8  # the newest results kept on disk, for resumes; older ones go
_running = threading.BoundedSemaphore(MAX_RUNNING)

# Set in this order (folders first: they cannot change once external access
# is off) before the query is parsed, then locked: a query cannot change them.
# The folders name no place of the daemon's: duckdb_settings() and
# current_setting() show them to the query (given at connect, DuckDB also
# listed the working folder in allowed_paths).
NOWHERE = "/nonexistent"
_SANDBOX = {
    "home_directory": NOWHERE,  # not the daemon user's home
    "secret_directory": NOWHERE,
    "extension_directory": NOWHERE,
    "temp_directory": "",  # no spilling: the memory limit is the limit
    "python_enable_replacements": False,  # no daemon variable visible as a table
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_unsigned_extensions": False,
    "allow_community_extensions": False,
    "enable_external_access": False,  # no files, no network: only the registered tables
    "lock_configuration": True,
}

_locks: dict[str, threading.Lock] = {}  # one snapshot of a query at a time
_locks_lock = threading.Lock()


def run_remote_query(sql: str, found: Sequence[Found], cache_dir: Path,
                     time_limit_s: float = TIME_LIMIT_S,
                     memory_limit: str = MEMORY_LIMIT, budget: Any = None,
                     max_result_bytes: int = MAX_RESULT_BYTES) -> SnapshotSource:
    """The rows of a remote `sql` over the served datasets `found`, as a
    snapshot source; a RequestError (with DuckDB's message) when the query
    is refused, fails, or runs past `time_limit_s` seconds. `budget`: the
    daemon's MemoryBudget (tether.daemon.stream.budget), which the query's
    memory counts against while it runs."""
    if not _running.acquire(timeout=time_limit_s):
        raise Busy(f"{MAX_RUNNING} queries from loaders are running already; try again "
                   "when one has finished")
    memory = parse_size(memory_limit)
    if budget is not None:
        memory = min(memory, budget.limit // 2)
        budget.take(memory, 0)  # counted with the streams' windows while it runs
    try:
        name, path, paths = _in_process(sql, found, cache_dir, time_limit_s,
                                        f"{max(memory >> 20, 16)}MB", max_result_bytes)
    finally:
        if budget is not None:
            budget.give(memory)
        _running.release()
    return SnapshotSource(name, Path(path), [Path(p) for p in paths], "sql")


def _in_process(sql: str, found: Sequence[Found], cache_dir: Path, time_limit_s: float,
                memory_limit: str, max_result_bytes: int) -> tuple[str, str, list[str]]:
    """`query_here` in a process of its own (started now, ended after): nothing
    is inherited from another query, and ending one, if it outlives its time
    limit by GRACE_S (a call DuckDB cannot interrupt), touches no other."""
    process = LocalWorkers(1, _limit_memory, (parse_size(MEMORY_LIMIT) + PROCESS_OVERHEAD,))
    with _live_lock:
        _live.add(process)
    try:
        future = process.submit(query_here, sql, list(found), cache_dir, time_limit_s,
                                memory_limit, max_result_bytes)
        return future.result(time_limit_s + GRACE_S)
    except TimeoutError:
        raise RequestError(f"query ran past its {time_limit_s:g} s time limit, in a call "
                           "that could not be interrupted; its process was ended") from None
    except WorkerDied:
        raise RequestError(f"the query's process died: past its memory ({memory_limit} for "
                           "DuckDB and its process's share), or a crash; ask for less") \
            from None
    finally:
        with _live_lock:
            _live.discard(process)
        process.kill()  # (done by now, or to be ended)


_live: set[LocalWorkers] = set()  # queries' processes running, so that stopping ends them
_live_lock = threading.Lock()


def stop_query_processes() -> None:
    """The daemon is stopping: end every query's process."""
    with _live_lock:
        running = list(_live)
    for process in running:
        process.kill()


def _limit_memory(nbytes: int) -> None:
    """In a query process, at its start: the operating system's bound on its
    writable memory. (RLIMIT_AS, the address space, also counts what
    allocators and thread stacks only reserve: DuckDB's threads then failed to
    start, "cannot allocate memory for thread-local data", on a plain query.)"""
    import resource

    # Not enforced everywhere (macOS): there, DuckDB's own limit alone.
    with contextlib.suppress(ValueError, OSError, AttributeError):
        resource.setrlimit(resource.RLIMIT_DATA, (nbytes, nbytes))


def query_here(sql: str, found: Sequence[Found], cache_dir: Path, time_limit_s: float,
               memory_limit: str, max_result_bytes: int) -> tuple[str, str, list[str]]:
    """In a query process: the query's snapshot, as (name, path, files read)."""
    import duckdb

    try:
        return _query(duckdb, sql, found, cache_dir, time_limit_s, memory_limit,
                      max_result_bytes)
    except RequestError as exc:  # (its text may quote where a file was looked for)
        raise type(exc)(without_paths(str(exc), found, cache_dir)) from None


def _query(duckdb, sql: str, found: Sequence[Found], cache_dir: Path, time_limit_s: float,
           memory_limit: str, max_result_bytes: int) -> tuple[str, str, list[str]]:
    con = sandboxed(duckdb, memory_limit)
    try:
        _check(con, sql)
        tables = _visible(con, sql, found, cache_dir)
        paths = [p for _, _, files in tables for p in files]
        digest = snapshot_key("remote sql", sql)
        key = snapshot_key(digest, repr([n for n, _, _ in tables]), fingerprint(paths))
        with _lock(key):
            path = _run(con, sql, cache_dir, f"sql.{digest}", key, time_limit_s,
                        max_result_bytes)
        _forget_old_results(path)
    finally:
        con.close()
    return f"sql.{digest}", str(path), [str(p) for p in paths]


def sandboxed(duckdb, memory_limit: str):
    """An in-memory DuckDB with the sandbox's settings, locked."""
    con = duckdb.connect(":memory:", config={"memory_limit": memory_limit, "threads": THREADS})
    try:
        for name, value in _SANDBOX.items():
            con.execute(f"SET {name} = '{value}'" if isinstance(value, str)
                        else f"SET {name} = {str(value).lower()}")
    except BaseException:
        con.close()
        raise
    return con


def without_paths(text: str, found: Sequence[Found] = (), cache_dir: Path | None = None) -> str:
    """An engine's message with the daemon's folders left out (some of DuckDB's
    and pyarrow's errors quote where they looked): the served datasets' folders,
    the cache, its working folder and home, longest first."""
    folders = {str(p.parent) for f in found for p in f.paths} | \
        {str(cache_dir or ""), os.getcwd(), os.path.expanduser("~")}
    folders |= {os.path.realpath(folder) for folder in folders if folder}
    for folder in sorted((f for f in folders if len(f) > 1), key=len, reverse=True):
        text = text.replace(folder, "<daemon folder>")
    return text


def _forget_old_results(newest: Path) -> None:
    """Keep the KEPT_RESULTS newest query results: each distinct query makes
    one, and a loader could send many. (A stream still reading a removed file
    keeps it open; a resume after it went runs the query again, and is
    refused if its rows changed, like any changed dataset.)"""
    keep_newest(newest, "sql.*.arrow", KEPT_RESULTS)
    with _locks_lock:
        for key in [k for k, lock in _locks.items() if not lock.locked()]:
            del _locks[key]


def _check(con, sql: str) -> None:
    """Refused unless one SELECT, by DuckDB's own parser (of this connection:
    parsing alone opens nothing, and the connection is sandboxed anyway)."""
    import duckdb

    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise RequestError(f"the query does not parse: {one_line(exc)}") from None
    if len(statements) != 1:
        raise RequestError(f"send one SELECT statement; the query holds {len(statements)}")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise RequestError(f"only a SELECT (or WITH ... SELECT) may run here, read-only; "
                           f"this is a {kind.name} statement")


def _visible(con, sql: str, found: Sequence[Found], cache_dir: Path
             ) -> list[tuple[str, object, list[Path]]]:
    """(name, pyarrow data, files it depends on) of each served dataset whose
    name is in the query's text, registered in `con`: only those are opened,
    not all that are served. (DuckDB cannot list the tables a query reads
    before they exist, so the text decides: a name that is only in a string
    or a longer name costs a needless open, and a needless new snapshot when
    its files change, never a wrong row.)"""
    text = sql.lower()  # DuckDB's names are case-insensitive
    tables = []
    for f in found:
        named = f.name.lower()
        if named not in text and named.replace('"', '""') not in text:
            continue
        try:
            if f.reader is None and f.paths and f.kind.format in FILE_FORMATS:
                tables.append((f.name, arrow_dataset(f.kind.format, f.paths), list(f.paths)))
            elif issubclass(f.kind, SnapshotSource):
                tables.append(_snapshot_table(f, cache_dir))
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise RequestError(f"dataset {f.name!r} cannot be read for the query: "
                               f"{one_line(exc)}") from None
    for name, data, _ in tables:
        con.register(name, data)
    return tables


def _snapshot_table(found: Found, cache_dir: Path) -> tuple[str, object, list[Path]]:
    """A database table's or a query's snapshot, as the catalog has it. Opened
    here without `refresh`: a remote query must not retake the owner's snapshots."""
    options = {**found.options, **({"refresh": False} if "refresh" in found.options else {})}
    source = found.kind(found.name, found.paths, cache_dir, **options)
    try:
        return found.name, arrow_dataset("arrow", source.paths), list(source.paths)
    finally:
        source.close()


def _lock(key: str) -> threading.Lock:
    with _locks_lock:
        return _locks.setdefault(key, threading.Lock())


def _run(con, sql: str, cache_dir: Path, name: str, key: str, time_limit_s: float,
         max_result_bytes: int) -> Path:
    import duckdb

    late = threading.Event()

    def interrupt() -> None:
        late.set()
        con.interrupt()

    timer = threading.Timer(time_limit_s, interrupt)
    timer.daemon = True
    timer.start()
    try:
        return snapshot(cache_dir, name, key, lambda: _rows(con, sql, max_result_bytes))
    except (duckdb.Error, pa.ArrowException, ValueError, OSError) as exc:
        # (pyarrow's reader raises an interrupted or failed stream as OSError)
        if late.is_set():
            raise RequestError(f"query ran past its {time_limit_s:g} s time limit "
                               "(ask for fewer rows, or filter before joining)") from None
        raise RequestError(f"the query failed: {one_line(exc)}") from None
    finally:
        timer.cancel()


def _rows(con, sql: str, max_result_bytes: int):
    rows = reader(con, sql, BATCH_ROWS)
    return rows.schema, _bounded(rows, max_result_bytes)


def _bounded(batches: Iterable[pa.RecordBatch],
             max_result_bytes: int) -> Iterator[pa.RecordBatch]:
    """The result's batches, refused past `max_result_bytes` in all or
    MAX_BATCH_BYTES in one (the partial snapshot is then removed)."""
    total = 0
    for batch in batches:
        total += batch.nbytes
        if batch.nbytes > MAX_BATCH_BYTES or total > max_result_bytes:
            raise RequestError(
                f"the query's result is too large: over {max_result_bytes >> 20} MiB in all, "
                f"or rows over {MAX_BATCH_BYTES >> 20} MiB per {BATCH_ROWS} (ask for fewer "
                "rows or narrower columns)")
        yield batch
