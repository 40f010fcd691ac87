"""SQLite files as datasets: `tether serve shop.sqlite` serves each table and
view of the file (not SQLite's own sqlite_* tables) as dataset `shop.<table>`.

A database file may change while it is streamed, and a plan, exactly-once
and a resume need rows that do not, so each table is read once into a
snapshot (snapshots.py), keyed by the file's fingerprint: a changed file is
a new snapshot on the table's next use, an unchanged one is reused across
restarts. Reading never holds the table in memory: 65,536 rows at a time
(`fetchmany`) become one Arrow record batch, over a read-only connection.

SQLite is dynamically typed, so a column's Arrow type comes from its declared
type's affinity (https://www.sqlite.org/datatype3.html#affinity_name_examples):
INTEGER -> int64, REAL -> float64, TEXT -> string, BLOB -> binary. A column
without one (a view's expression, no declared type, NUMERIC) is typed by the
values it holds: integers -> int64, with reals -> float64, text -> string,
blobs -> binary. NULL is allowed anywhere. A value that fits none of that
(text in an INTEGER column, say) is an error naming the table, column and
row, with the fix: a query that casts it (`tether serve --sql`).

`query_batches(path, query)` reads an owner's query the same way
(`tether serve --sql shop.cheap="SELECT ..."`, sql_datasets.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pyarrow as pa

from .base import fingerprint
from .snapshots import SnapshotSource, snapshot, snapshot_key

SUFFIXES = (".sqlite", ".sqlite3", ".db")
FETCH_ROWS = 65536
_MAGIC = b"SQLite format 3\0"  # the first 16 bytes of every SQLite database file

# Python's type of a value SQLite returns, per Arrow type it may become.
_FITS: dict[pa.DataType, tuple[type, ...]] = {
    pa.int64(): (int,),
    pa.float64(): (int, float),
    pa.string(): (str,),
    pa.binary(): (bytes,),
}


def is_database(path: Path) -> bool:
    """Whether `path` is a SQLite file: by suffix, then by its header, since
    .db names many other things (Thumbs.db in a folder of images, say)."""
    if path.suffix.lower() not in SUFFIXES:
        return False
    try:
        with open(path, "rb") as file:
            return file.read(len(_MAGIC)) == _MAGIC
    except OSError:
        return False


def connect(path: Path) -> sqlite3.Connection:
    """A read-only connection: the daemon never writes the owner's database.
    (Not `immutable`: the file may change, which its fingerprint catches.)"""
    uri = f"{Path(path).resolve().as_uri()}?mode=ro"
    return sqlite3.connect(uri, uri=True, check_same_thread=False)


def tables(path: Path) -> list[str]:
    """The tables and views of the database at `path`, SQLite's own left out."""
    with closing(connect(path)) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
                            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name").fetchall()
    return [name for (name,) in rows]


def affinity(declared: str) -> pa.DataType | None:
    """The Arrow type of a declared SQLite column type, by SQLite's own
    affinity rules (in their order); None: decided by the values."""
    declared = declared.upper()
    if "INT" in declared:
        return pa.int64()
    if any(word in declared for word in ("CHAR", "CLOB", "TEXT")):
        return pa.string()
    if "BLOB" in declared:
        return pa.binary()
    if any(word in declared for word in ("REAL", "FLOA", "DOUB")):
        return pa.float64()
    return None  # NUMERIC, or none declared: whatever the values are


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _value_types(conn: sqlite3.Connection, source: str, columns: list[str]) -> list[set[str]]:
    """SQLite's storage classes of the values of `columns` ('integer', 'real',
    'text', 'blob'), in one pass over the rows."""
    classes = ("integer", "real", "text", "blob")
    parts = [f"max(typeof({_quote(c)}) = '{k}')" for c in columns for k in classes]
    row = conn.execute(f"SELECT {', '.join(parts)} FROM {source}").fetchone()
    return [{k for j, k in enumerate(classes) if row[i * len(classes) + j]}
            for i in range(len(columns))]


def _by_values(table: str, column: str, held: set[str]) -> pa.DataType:
    if held <= {"integer"}:
        return pa.int64()  # all NULL, too: int64 of nulls
    if held <= {"integer", "real"}:
        return pa.float64()
    if held == {"text"}:
        return pa.string()
    if held == {"blob"}:
        return pa.binary()
    raise ValueError(f"column {column!r} of {table!r} holds values of several kinds "
                     f"({', '.join(sorted(held))}); serve a query that casts it, e.g. "
                     f"tether serve --sql db.x=\"SELECT CAST({column} AS TEXT) ... FROM {table}\"")


def _batch(schema: pa.Schema, rows: list[tuple], first_row: int, what: str) -> pa.RecordBatch:
    arrays = []
    for i, values in enumerate(zip(*rows, strict=True)):
        field = schema.field(i)
        try:
            arrays.append(pa.array(values, type=field.type))
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            raise _misfit(what, field, values, first_row) from None
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _misfit(what: str, field: pa.Field, values: tuple, first_row: int) -> ValueError:
    """The error for the first value in `values` that cannot be of `field`'s type."""
    fits = _FITS[field.type]
    for offset, value in enumerate(values):
        if value is not None and not isinstance(value, fits):
            shown = repr(value if not isinstance(value, bytes) else value[:20])[:60]
            return ValueError(
                f"{what}: row {first_row + offset} (counting from 0) of column {field.name!r} "
                f"holds {type(value).__name__} {shown}, not {field.type} as the column's "
                f"declared type says; serve a query that casts or filters it "
                f"(tether serve --sql db.x=\"SELECT ... FROM ...\")")
    return ValueError(f"{what}: column {field.name!r} cannot become {field.type}")


def _rows(conn: sqlite3.Connection, cursor: sqlite3.Cursor, schema: pa.Schema,
          what: str) -> Iterator[pa.RecordBatch]:
    try:
        read = 0
        while True:
            rows = cursor.fetchmany(FETCH_ROWS)
            if not rows:
                return
            yield _batch(schema, rows, read, what)
            read += len(rows)
    finally:
        conn.close()


def _read(path: Path, query: str, declared: list[str | None] | None,
          what: str) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    conn = connect(path)
    try:
        cursor = conn.execute(query)
        names = [d[0] for d in cursor.description]
        types = declared or [None] * len(names)
        undecided = [n for n, t in zip(names, types, strict=True) if t is None]
        if undecided:  # one pass first, to know what the values are
            held = dict(zip(undecided, _value_types(conn, f"({query})", undecided), strict=True))
            types = [t or _by_values(what, n, held[n]) for n, t in zip(names, types, strict=True)]
        schema = pa.schema([pa.field(n, t) for n, t in zip(names, types, strict=True)])
    except BaseException:
        conn.close()
        raise
    return schema, _rows(conn, cursor, schema, what)


def table_batches(path: Path, table: str) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The rows of `table`, as Arrow record batches of up to 65,536 rows."""
    with closing(connect(path)) as conn:
        info = conn.execute(f"PRAGMA table_info({_quote(table)})").fetchall()
    if not info:
        raise ValueError(f"{path} has no table {table!r} (any more); tables: "
                         f"{', '.join(tables(path)) or 'none'}")
    columns = [row[1] for row in info]
    declared = [affinity(row[2] or "") for row in info]
    query = f"SELECT {', '.join(map(_quote, columns))} FROM {_quote(table)}"
    return _read(path, query, declared, f"table {table!r} of {path}")


def query_batches(path: Path, query: str) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The rows of an owner's `query` in the database at `path`, read-only, as
    Arrow record batches; each column typed by the values it holds.

    >>> schema, batches = query_batches(Path("shop.sqlite"),
    ...                                 "SELECT * FROM items WHERE price < 5")
    """
    return _read(path, query.strip().rstrip(";"), None, f"query {query!r} on {path}")


class SqliteTableSource(SnapshotSource):
    """One table (or view) of a SQLite file, served from its snapshot."""

    format = "sqlite"

    def __init__(self, name: str, paths: list[Path], cache_dir: Path, table: str,
                 database: str = "", refresh: bool = False) -> None:
        key = snapshot_key(fingerprint(paths), table)
        path = snapshot(cache_dir, name, key, lambda: table_batches(paths[0], table), refresh)
        super().__init__(name, path, list(paths), self.format)
        self.origin = f"table {table} of {paths[0]}"


def discover(path: Path, root: Path | None = None) -> list:
    """A dataset `<stem>.<table>` for each table and view of the file at `path`."""
    from . import Found

    try:
        names = tables(path)
    except sqlite3.Error as exc:
        raise ValueError(f"{path}: cannot read it as a SQLite database: {exc}") from None
    return [Found(f"{path.stem}.{table}", [path], root, SqliteTableSource,
                  {"table": table, "database": path.stem}) for table in names]

