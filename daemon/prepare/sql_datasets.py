"""The owner's queries as datasets: `tether serve DATA --sql NAME=QUERY`.

Where the query runs depends on NAME:

- `NAME` is `db.x` and `db` is a served database (the prefix of its tables'
  datasets: `shop` for `shop.sqlite`'s `shop.items`): QUERY runs in that
  database, read-only, in its own SQL dialect. Which engine runs it is
  ENGINES[format of the database's table sources] (see below).
- Any other NAME: QUERY runs in DuckDB over the served files, each a table
  (a view) named by its dataset, quoted where the name needs it:
  `SELECT * FROM "shop.items"` is not a file, but `FROM train` and
  `FROM "runs.2024"` are. Parquet, CSV, Arrow IPC and Feather datasets are
  visible; .npy/.npz columns, image folders, database tables and other
  queries' results are not (they are not files DuckDB can scan).

The result is read as Arrow record batches into a snapshot (snapshots.py)
when the catalog opens the dataset, never whole in memory: DuckDB runs with
a memory limit (spilling to the daemon's cache) and few threads. The
snapshot's key is the query and the fingerprint of every file it can see,
which are the dataset's `paths`: any of them changing makes a new snapshot
on next use. A query that fails is listed with its error (`tether ls`), and
the other datasets keep serving.

ENGINES, for databases: a dict from a database table source's `format`
("sqlite", "postgresql") to `batches(table_found, query) -> (schema,
iterable of pyarrow.RecordBatch)`, which runs `query` read-only in the
database that `table_found` (the Found of any of its tables) comes from. A
new kind of database is one function and one line there; its tables'
datasets must be named `<database>.<table>`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import pyarrow as pa

from ..private import private_dir
from ..sources import Found
from ..sources.base import fingerprint
from ..sources.snapshots import SnapshotSource, snapshot, snapshot_key

Batches = tuple[pa.Schema, Iterable[pa.RecordBatch]]

BATCH_ROWS = 65536
MEMORY_LIMIT = "1GB"  # DuckDB spills past it (to CACHE/duckdb), or fails saying so
THREADS = max(1, min(4, (os.cpu_count() or 1) // 2))  # the daemon is serving meanwhile

# Dataset formats DuckDB can see, and how (`found.kind.format`).
FILE_FORMATS = ("parquet", "csv", "arrow", "feather")


def _sqlite(found: Found, query: str) -> Batches:
    from ..sources.sqlite import query_batches

    return query_batches(found.paths[0], query)


def _postgresql(found: Found, query: str) -> Batches:
    from ..sources.postgres import query_batches

    return query_batches(found.options["database"].url, query)


ENGINES: dict[str, Callable[[Found, str], Batches]] = {
    "sqlite": _sqlite,
    "postgresql": _postgresql,
}


def query_dataset(name: str, query: str, found: Sequence[Found], refresh: bool = False) -> Found:
    """The dataset `name` made of `query`'s result (see the module's docstring).

    >>> query_dataset("cheap", "SELECT * FROM items WHERE price < 5", found)
    Found(name='cheap', paths=[...the files DuckDB can see...], reader=QuerySource, ...)
    """
    origin = f"--sql {name}={query}"
    database = _database(name, found)
    if database is not None:
        return Found(name, list(database.paths), reader=QuerySource, origin=origin,
                     options={"query": query, "engine": database.kind.format,
                              "via": database, "refresh": refresh})
    visible = visible_files(found)
    paths = [path for _, _, files in visible for path in files]
    return Found(name, paths, reader=QuerySource, origin=origin,
                 options={"query": query, "tables": visible, "refresh": refresh})


def _database(name: str, found: Sequence[Found]) -> Found | None:
    """The Found of a table of the served database NAME's prefix names, if any:
    the longest prefix (`my.shop` in `my.shop.cheap`) that is a database's."""
    parts = name.split(".")
    for end in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:end]) + "."
        tables = [f for f in found if f.kind.format in ENGINES and f.name.startswith(prefix)
                  and f.options.get("table") is not None]
        homes = {(f.kind.format, tuple(f.paths), repr(f.options.get("database"))) for f in tables}
        if len(homes) > 1:
            where = ", ".join(sorted(f.name for f in tables))
            raise ValueError(f"--sql {name}: {prefix[:-1]!r} names more than one served "
                             f"database ({where}); rename a file")
        if tables:
            return tables[0]
    return None


def visible_files(found: Sequence[Found]) -> tuple[tuple[str, str, tuple[Path, ...]], ...]:
    """(dataset name, format, its files) for each served dataset DuckDB can scan."""
    return tuple((f.name, f.kind.format, tuple(f.paths)) for f in found
                 if f.reader is None and f.paths and f.kind.format in FILE_FORMATS)


def quote(name: str) -> str:
    """A SQL identifier for a dataset name ("a.b" is one table, not b in a)."""
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str | Path) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def arrow_dataset(form: str, paths: Sequence[Path]):
    """A lazily read pyarrow dataset of files: DuckDB scans it a batch at a time
    (only the columns and row groups a query needs), without opening files itself."""
    import pyarrow.dataset as ds

    files = [str(p) for p in paths]
    if form == "parquet":
        return ds.dataset(files, format="parquet")
    if form == "csv":
        return ds.dataset(files, format="csv")
    try:
        return ds.dataset(files, format="ipc")
    except pa.ArrowInvalid:  # the streaming format: a memory-mapped table, no copy
        return pa.ipc.open_stream(pa.memory_map(files[0])).read_all()


def register_native(con, tables: Iterable[tuple[str, str, Sequence[Path]]]) -> None:
    """Each dataset as a view in `con`: Parquet and CSV read by DuckDB itself,
    Arrow IPC through pyarrow (DuckDB has no reader of its own for it)."""
    for name, form, paths in tables:
        if form == "parquet":
            files = ", ".join(_literal(p) for p in paths)
            con.execute(f"CREATE VIEW {quote(name)} AS SELECT * FROM read_parquet([{files}])")
        elif form == "csv":
            con.execute(f"CREATE VIEW {quote(name)} AS "
                        f"SELECT * FROM read_csv({_literal(paths[0])})")
        else:
            con.register(name, arrow_dataset(form, paths))


def reader(con, query: str, rows: int = BATCH_ROWS) -> pa.RecordBatchReader:
    """The query's rows, streamed `rows` at a time (DuckDB 2 and 1 name the
    call differently)."""
    relation = con.sql(query)
    if relation is None:  # a statement without rows
        raise ValueError("it returns no rows; a dataset is a SELECT's result")
    for method in ("to_arrow_reader", "fetch_arrow_reader", "fetch_record_batch"):
        if hasattr(relation, method):
            return getattr(relation, method)(rows)
    raise RuntimeError(f"this DuckDB ({_duckdb_version()}) cannot stream a result as Arrow")


def _duckdb_version() -> str:
    import duckdb

    return duckdb.__version__


def duckdb_batches(query: str, tables: Iterable[tuple[str, str, Sequence[Path]]],
                   cache_dir: Path) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The rows of `query` run by DuckDB over `tables`, a batch at a time."""
    import duckdb

    con = duckdb.connect(":memory:", config={
        "memory_limit": MEMORY_LIMIT, "threads": THREADS,
        "temp_directory": str(private_dir(cache_dir / "duckdb"))})
    try:
        register_native(con, tables)
        rows = reader(con, query)
    except BaseException:
        con.close()
        raise
    return rows.schema, _draining(con, rows)


def _draining(con, rows: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    try:
        yield from rows
    finally:
        con.close()


class QuerySource(SnapshotSource):
    """An owner's query's result, served from its snapshot."""

    format = "sql"

    def __init__(self, name: str, paths: list[Path], cache_dir: Path, query: str,
                 tables: tuple = (), engine: str = "", via: Found | None = None,
                 refresh: bool = False) -> None:
        if via is not None:
            where = f"in the database of {via.name}"
            key = snapshot_key(engine, query, fingerprint(paths))

            def batches() -> Batches:
                return ENGINES[engine](via, query)
        else:
            where = ("over " + ", ".join(t[0] for t in tables)) if tables else "in DuckDB"
            key = snapshot_key("duckdb", query, repr([(n, f) for n, f, _ in tables]),
                               fingerprint(paths))

            def batches() -> Batches:
                return duckdb_batches(query, tables, cache_dir)

        try:
            path = snapshot(cache_dir, name, key, batches, refresh)
        except Exception as exc:
            seen = ("; tables: " + ", ".join(quote(t[0]) for t in tables)) if via is None else ""
            raise ValueError(f"--sql {name}: the query failed {where}: "
                             f"{one_line(exc)} (query: {query}){seen}") from exc
        super().__init__(name, path, list(paths), self.format)
        self.origin = f"--sql {name}"


def one_line(exc: Exception) -> str:
    """An engine's error on one line: DuckDB's quote of the query ("LINE 1: ...",
    then a line of carets) is left out, the query is shown whole anyway."""
    lines = [line.strip() for line in str(exc).splitlines()]
    kept = [line for line in lines if line and not line.startswith("LINE ")
            and set(line) != {"^"}]
    return " ".join(kept)
