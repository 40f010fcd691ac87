"""PostgreSQL tables as datasets: `tether serve postgresql://user@host:5432/db`.

Each table the user may SELECT from becomes a dataset named `db.table`
(schema `public`) or `db.schema.table` (any other schema). A table keeps
changing while it is streamed, and a plan, exactly-once and a resume need
rows that do not, so each is read once into a snapshot (snapshots.py) and
served from it, reused across restarts until `tether serve --refresh`.

Reading never holds a table in memory: a server-side (named) cursor in a
READ ONLY transaction, with a statement timeout, fetches 65,536 rows at a
time, and each chunk becomes one Arrow record batch. `numeric` becomes
float64, not decimal: a tensor is what Tether serves, and a decimal column
could not become one (precision beyond a double's 15-16 digits is lost).

The password (in the URL, `PGPASSWORD` or `~/.pgpass`; libpq reads the last
two itself) is never shown: every message, log line and `origin` carries
`redact(url)`, and psycopg's own errors, which may quote the connection
string, are scrubbed before they are raised or logged.

`query_batches(url, query)` is the same reading for an owner's query
(`tether serve --sql db.x="SELECT ..."`, sql_datasets.py).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pyarrow as pa

from . import Found
from .snapshots import SnapshotSource, snapshot, snapshot_key

log = logging.getLogger(__name__)

FETCH_ROWS = 65536
SNAPSHOT_TIMEOUT = "10min"  # one FETCH (or the query's first rows) may take this long
CONNECT_TIMEOUT_S = 10
# A database is asked for its tables again at most this often (the catalog scans
# every second); a failure is logged once per such period, not once a second.
REDISCOVER_SECONDS = 30.0

_SCHEMES = ("postgresql", "postgres")
# user:password@ in any URL-looking text: what libpq or psycopg may quote back.
_URL_PASSWORD = re.compile(r"(?i)(postgres(?:ql)?://[^:/@\s'\"]*):[^@\s'\"]*@")
# password=... in a key=value connection string.
_KEYWORD_PASSWORD = re.compile(r"(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)")


def redact(url: str) -> str:
    """`url` with its password removed, for anything shown or logged.

    >>> redact("postgresql://ann:s3cret@db.example:5432/shop")
    'postgresql://ann@db.example:5432/shop'
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    # The user info ends at the last "@" before the query: a password may hold
    # an unescaped "/" or "@" that a URL parser would take for the path or host.
    end = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, end)
    if at >= 0:
        rest = rest[:at].partition(":")[0] + rest[at:]
    # A password may also ride in the query string (?password=...).
    return scheme + sep + re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", rest)


def has_password(url: str) -> bool:
    """Whether `url` carries a password, as libpq reads it: in the user info,
    or a query parameter however spelled (`?pass%77ord=` is `password` too)."""
    if redact(url) != url:
        return True
    try:
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:  # (no psycopg: such a URL is not served anyway) any hint of one
        return "pass" in unquote(url).lower()
    try:
        return bool(conninfo_to_dict(url).get("password"))
    except Exception:  # noqa: BLE001 - unparsable: psycopg will say so when it is opened
        return False


def without_password(url: str) -> str:
    """`url` with no password at all (redact's "***" would be taken for one)."""
    url = redact(url)
    url = re.sub(r"(?i)([?&])password=\*\*\*(&|$)", r"\1", url)
    return url.rstrip("?&")


def scrub(text: str, url: str) -> str:
    """`text` (an error from psycopg or libpq) with any password it quotes removed."""
    text = _URL_PASSWORD.sub(r"\1@", text)
    text = _KEYWORD_PASSWORD.sub(r"\1***", text)
    for secret in _passwords(url):
        text = text.replace(secret, "***")
    return text


def _passwords(url: str) -> list[str]:
    found = []
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        found += [password, unquote(password)]
    if os.environ.get("PGPASSWORD"):
        found.append(os.environ["PGPASSWORD"])
    return sorted({p for p in found if len(p) >= 3}, key=len, reverse=True)


class DatabaseError(ValueError):
    """A database that could not be reached or read; its message is redacted."""


@dataclass(frozen=True)
class Database:
    """A server's URL, which may hold a password: its repr shows it redacted,
    so a Found (options) printed by anyone does not leak it."""

    url: str = field(repr=False)

    @property
    def shown(self) -> str:
        return redact(self.url)

    def __repr__(self) -> str:
        return f"Database({self.shown!r})"


def _connect(url: str):
    """A psycopg connection, READ ONLY; errors redacted and with the fix."""
    import psycopg
    from psycopg.types.numeric import FloatLoader
    from psycopg.types.string import TextLoader

    try:
        conn = psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S,
                               application_name="tether")
    except psycopg.Error as exc:
        raise DatabaseError(
            f"cannot connect to {redact(url)}: {scrub(str(exc), url).strip()} (is the server "
            "running, and the user and password right? A password comes from the URL, "
            "PGPASSWORD or ~/.pgpass)") from None
    conn.read_only = True
    # numeric as float64 (see the module's docstring); JSON as its text.
    conn.adapters.register_loader("numeric", FloatLoader)
    for name in ("json", "jsonb"):
        conn.adapters.register_loader(name, TextLoader)
    return conn


# Type names (psycopg's registry) to Arrow types; array types by their element.
_SCALARS: dict[str, pa.DataType] = {
    "int2": pa.int16(), "int4": pa.int32(), "int8": pa.int64(), "oid": pa.int64(),
    "float4": pa.float32(), "float8": pa.float64(), "numeric": pa.float64(),
    "bool": pa.bool_(),
    "text": pa.string(), "varchar": pa.string(), "bpchar": pa.string(), "name": pa.string(),
    "char": pa.string(), "json": pa.string(), "jsonb": pa.string(),
    "bytea": pa.binary(),
    "date": pa.date32(), "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"), "time": pa.time64("us"),
}
_ARRAY_ELEMENTS = ("int2", "int4", "int8", "float4", "float8", "numeric", "bool", "text",
                   "varchar")


def _arrow_type(conn, oid: int) -> tuple[pa.DataType, bool]:
    """The Arrow type of a column of type `oid`, and whether its values become text
    by str() (types with no Arrow counterpart: uuid, interval, inet...)."""
    info = conn.adapters.types.get(oid)  # an array type's oid finds its element's info
    if info is None or info.name not in _SCALARS:
        return pa.string(), True
    if oid == info.oid:
        return _SCALARS[info.name], False
    if info.name in _ARRAY_ELEMENTS:
        return pa.list_(_SCALARS[info.name]), False
    return pa.string(), True


def _stream(url: str, query, timeout: str) -> Iterator:
    """Yields the schema, then record batches of `query`'s rows; owns the connection
    (closed when the generator ends or is closed)."""
    import psycopg

    conn = _connect(url)
    try:
        cursor = conn.cursor(name="tether")
        cursor.itersize = FETCH_ROWS
        try:
            # SET LOCAL, as a function that takes a parameter: for this transaction only.
            conn.execute("SELECT set_config('statement_timeout', %s, true)", (timeout,))
            cursor.execute(query)
        except psycopg.Error as exc:
            raise DatabaseError(f"{redact(url)}: the query failed: "
                                f"{scrub(str(exc), url).strip()}") from None
        names = [d.name for d in cursor.description]
        kinds = [_arrow_type(conn, d.type_code) for d in cursor.description]
        schema = pa.schema([pa.field(n, t) for n, (t, _) in zip(names, kinds, strict=True)])
        yield schema
        while True:
            try:
                rows = cursor.fetchmany(FETCH_ROWS)
            except psycopg.Error as exc:
                raise DatabaseError(f"{redact(url)}: reading rows failed: "
                                    f"{scrub(str(exc), url).strip()}") from None
            if not rows:
                break
            yield _batch(schema, kinds, rows)
            del rows
        cursor.close()
        conn.rollback()  # read only: nothing to keep
    finally:
        conn.close()


def _batch(schema: pa.Schema, kinds: list[tuple[pa.DataType, bool]],
           rows: list[tuple]) -> pa.RecordBatch:
    columns = list(zip(*rows, strict=True))
    arrays = []
    for i, (kind, as_text) in enumerate(kinds):
        values = columns[i]
        if as_text:
            values = [None if v is None else str(v) for v in values]
        try:
            arrays.append(pa.array(values, type=kind))
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise DatabaseError(f"column {schema.field(i).name!r} ({kind}) cannot become "
                                f"Arrow: {exc}; cast it in a query (tether serve --sql)") from None
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def query_batches(url: str, query: str, timeout: str = SNAPSHOT_TIMEOUT
                  ) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The rows of `query` on the server at `url`, as Arrow record batches of up
    to 65,536 rows, read with a server-side cursor in a READ ONLY transaction.

    >>> schema, batches = query_batches("postgresql://ann@localhost/shop",
    ...                                 "SELECT id, price FROM items")
    >>> snapshot(cache_dir, "shop.items", key, lambda: (schema, batches))
    """
    stream = _stream(url, query, timeout)
    return next(stream), stream


class PostgresTableSource(SnapshotSource):
    """One table of a database, served from its snapshot."""

    format = "postgresql"

    def __init__(self, name: str, paths: list[Path], cache_dir: Path, database: Database,
                 schema: str, table: str, refresh: bool = False) -> None:
        from psycopg import sql

        query = sql.SQL("SELECT * FROM {}.{}").format(sql.Identifier(schema),
                                                       sql.Identifier(table))
        key = snapshot_key(database.shown, schema, table)
        path = snapshot(cache_dir, name, key,
                        lambda: query_batches(database.url, query), refresh)
        super().__init__(name, path, [], self.format)
        self.origin = _origin(database, schema, table)


def _origin(database: Database, schema: str, table: str) -> str:
    return f"{database.shown} table {table if schema == 'public' else f'{schema}.{table}'}"


_LIST_TABLES = """
    SELECT table_schema, table_name FROM information_schema.tables
    WHERE table_type = 'BASE TABLE'
      AND table_schema NOT IN ('pg_catalog', 'information_schema')
      AND table_schema NOT LIKE 'pg\\_%'
      AND has_table_privilege(format('%I.%I', table_schema, table_name), 'SELECT')
    ORDER BY table_schema, table_name
"""


def tables(url: str) -> tuple[str, list[tuple[str, str]]]:
    """The database's name and the (schema, table) pairs the user may read."""
    import psycopg

    with _connect(url) as conn:
        try:
            rows = conn.execute(_LIST_TABLES).fetchall()
        except psycopg.Error as exc:
            raise DatabaseError(f"{redact(url)}: cannot list the tables: "
                                f"{scrub(str(exc), url).strip()}") from None
        return conn.info.dbname, [(s, t) for s, t in rows]


# (url, refresh) -> (when listed, its datasets): the catalog asks every second.
_listed: dict[tuple[str, bool], tuple[float, list[Found]]] = {}


def discover_database(url: str, refresh: bool = False,
                      clock: Callable[[], float] = time.monotonic) -> list[Found]:
    """A dataset for each table of the server at `url` the user may read.

    A server that cannot be reached is logged (redacted) and serves nothing
    now, or what it listed last time; the catalog says so if nothing at all
    is served. Listed again at most every REDISCOVER_SECONDS."""
    last = _listed.get((url, refresh))
    if last is not None and clock() - last[0] < REDISCOVER_SECONDS:
        return last[1]
    try:
        dbname, pairs = tables(url)
    except DatabaseError as exc:
        log.error("%s; its tables are not served now", exc)
        found = last[1] if last is not None else []
        _listed[url, refresh] = (clock(), found)
        return found
    database = Database(url)
    found = [Found(f"{dbname}.{table}" if schema == "public" else f"{dbname}.{schema}.{table}",
                   [], reader=PostgresTableSource,
                   options={"database": database, "schema": schema, "table": table,
                            "refresh": refresh},
                   origin=_origin(database, schema, table))
             for schema, table in pairs]
    if not found:
        log.warning("%s: the user may read no table (schema public or others); grant SELECT "
                    "on some", redact(url))
    _listed[url, refresh] = (clock(), found)
    return found
