"""Red-team review of the preparation surface (remote SQL, filters, databases,
transforms): each attack has a test asserting the correct behaviour. Ten of
them reproduced bugs this pass found (fixed since): a remote query's result
unbounded on disk and in memory, queries unbounded in number, an interrupted
stream escaping as an internal error, results and filter indexes kept
forever, a quoted dataset name, a transform's SystemExit, and a transform
that never returns keeping the daemon from stopping.

Threat model (docs/preprocessing.md, docs/security.md): whoever holds the URL
may read the served datasets, and with --allow-sql run read-only queries over
them, nothing more; a bad request gets a clear TetherError, never a crashed,
hung or filled-up daemon."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tether
import tether.daemon.prepare.remote_sql as remote_sql
from tether.daemon.prepare.remote_sql import run_remote_query
from tether.daemon.sources import discover
from tether.daemon.sources.postgres import without_password
from tether.daemon.stream import filtering
from tether.daemon.stream.filtering import FilterIndex
from tether.wire import filters
from tether.wire.errors import TetherError

from ..conftest import OWN_PEAK, AnonPeak, DaemonProcess

duckdb = pytest.importorskip("duckdb")

HERE = Path(__file__).resolve().parents[2]


@pytest.fixture
def served(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.table({"id": np.arange(1000), "x": np.arange(1000) / 10}),
                   data / "train.parquet")
    (data / "labels.csv").write_text("label,name\n0,a\n1,b\n")  # two formats: two datasets
    conn = sqlite3.connect(data / "shop.sqlite")
    conn.execute("CREATE TABLE items (id INTEGER, price REAL)")
    conn.executemany("INSERT INTO items VALUES (?, ?)", [(i, i / 2) for i in range(20)])
    conn.commit()
    conn.close()
    state = tmp_path / "state"
    (state / "cache" / "snapshots").mkdir(parents=True)
    (state / "token").write_text("tok-SECRET-123")  # what the daemon keeps beside its cache
    # Another dataset's snapshot, in the cache but not served: must stay unreachable.
    other = state / "cache" / "snapshots" / "hidden.items-0123456789abcdef.arrow"
    with pa.ipc.new_file(str(other), pa.schema([("secret", pa.string())])) as writer:
        writer.write_batch(pa.record_batch({"secret": ["hunter2"]}))
    return data, discover(data), state / "cache"


def _snapshots(cache: Path) -> list[Path]:
    folder = cache / "snapshots"
    return sorted(folder.iterdir()) if folder.exists() else []


def _rows(source) -> list[dict]:
    return pa.ipc.open_file(str(source.paths[0])).read_all().to_pylist()


# --- remote SQL: the sandbox ------------------------------------------------

@pytest.mark.parametrize("query", [
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM read_blob('/etc/hostname')",
    "SELECT * FROM read_json('/etc/hostname')",
    "SELECT * FROM read_json_auto('/etc/hostname')",
    "SELECT * FROM sniff_csv('/etc/passwd')",
    "SELECT * FROM glob('{cache}/*')",
    "SELECT * FROM read_text('{cache}/../token')",
    "SELECT * FROM '{cache}/snapshots/hidden.items-0123456789abcdef.arrow'",
    "SELECT * FROM read_parquet('{data}/train.parquet')",
    'SELECT * FROM "../data/train.parquet"',
    "SELECT * FROM 'train.parquet'",
    'SELECT * FROM "hidden.items"',  # a snapshot in the cache that is not served
    "SELECT * FROM duckdb_secrets()",
    "SELECT * FROM which_secret('s3://bucket/x', 's3')",
    "SELECT * FROM duckdb_extensions() WHERE installed",
    "SELECT getenv('PGPASSWORD')",
    "SELECT * FROM query('ATTACH '':memory:'' AS m')",
    "SELECT * FROM query_table('{data}/train.parquet')",
    "SELECT * FROM pragma_database_list()",
    "EXPLAIN ANALYZE SELECT 1",
    "EXPLAIN SELECT 1",
    "PIVOT train ON id USING sum(x)",
    "SELECT 1; ATTACH ':memory:' AS m",
    "SELECT 1 /* a comment */; COPY (SELECT 1) TO '/tmp/x.csv'",
    "SELECT 1 -- trailing\n; LOAD httpfs",
    "USE memory",
    "CHECKPOINT",
    "EXPORT DATABASE '/tmp/tether-exported'",
    "SELECT set_config('enable_external_access', 'true')",
    "SELECT * FROM ｒｅａｄ_text('/etc/hostname')",  # fullwidth homoglyphs
])
def test_the_sandbox_refuses_reaching_past_the_served_datasets(
        served, query: str, monkeypatch) -> None:
    data, found, cache = served
    monkeypatch.setenv("PGPASSWORD", "s3cret-Pw-7Qz")
    with pytest.raises(TetherError) as refused:
        run_remote_query(query.format(cache=cache, data=data), found, cache, time_limit_s=10)
    assert "hunter2" not in str(refused.value) and "s3cret" not in str(refused.value)
    assert not Path("/tmp/tether-exported").exists()
    assert [p.name for p in _snapshots(cache)] == ["hidden.items-0123456789abcdef.arrow"]


@pytest.mark.parametrize(("query", "want"), [
    ("SELECT ';ATTACH '':memory:''' AS s", [{"s": ";ATTACH ':memory:'"}]),
    ("SELECT 1 AS one /* ; DROP TABLE train */", [{"one": 1}]),
    ("SELECT 1 AS one; -- ; COPY", [{"one": 1}]),
    ("SELECT * FROM query('SELECT 42 AS a')", [{"a": 42}]),
    ("FROM train SELECT count(*) AS n", [{"n": 1000}]),
    ("SELECT count(*) AS n FROM (SUMMARIZE train)", [{"n": 2}]),  # a SELECT: harmless
    ('SELECT count(*) AS n FROM "TRAIN"', [{"n": 1000}]),
    ("SELECT current_setting('enable_external_access') AS on", [{"on": False}]),
])
def test_one_select_in_disguise_runs_as_that_select_only(served, query: str, want) -> None:
    _, found, cache = served
    assert _rows(run_remote_query(query, found, cache)) == want


def test_no_daemon_path_appears_in_any_duckdb_function_or_setting(served) -> None:
    """Issue 23 (4): duckdb_settings() showed allowed_paths (the daemon's working
    folder) and secret_directory (its home), and duckdb_extensions()' error
    quoted the home folder. Every duckdb_*() table function and every setting
    (what current_setting() reads), through the sandbox: no daemon path."""
    import duckdb

    _, found, cache = served
    folders = {str(Path.home()), os.getcwd(), str(cache)}
    with duckdb.connect() as plain:
        functions = [row[0] for row in plain.execute(
            "SELECT DISTINCT function_name FROM duckdb_functions() WHERE function_type = 'table' "
            "AND function_name LIKE 'duckdb\\_%' ESCAPE '\\' ORDER BY 1").fetchall()]
    assert "duckdb_settings" in functions  # every setting's value, as current_setting reads it
    seen = []
    queries = [*(f"SELECT * FROM {function}()" for function in functions),
               *(f"SELECT current_setting('{name}') AS v" for name in
                 ("home_directory", "secret_directory", "extension_directory", "temp_directory",
                  "allowed_paths", "allowed_directories"))]
    for query in queries:  # (each in a fresh query process: a few seconds in all)
        try:
            seen.append(repr(_rows(run_remote_query(query, found, cache))))
        except TetherError as exc:
            seen.append(str(exc))
    leaks = [(folder, text[:300]) for text in seen for folder in folders if folder in text]
    assert not leaks


def test_an_error_naming_a_served_file_does_not_name_its_folder(tmp_path: Path) -> None:
    """Found by a review: only the daemon's working folder and home were cut from
    errors; a dataset's file gone since it was registered was quoted with its
    whole path (`Failed to open local file '/srv/data/u.csv'`)."""
    data = tmp_path / "srv" / "data"
    data.mkdir(parents=True)
    (data / "u.csv").write_text("a\n1\n")
    found = discover(data)
    (data / "u.csv").unlink()
    with pytest.raises(TetherError) as failed:
        run_remote_query("SELECT * FROM u", found, tmp_path / "cache")
    assert str(data) not in str(failed.value) and "<daemon folder>" in str(failed.value)


def test_an_endless_recursive_query_is_a_clear_time_limit_error(served) -> None:
    _, found, cache = served
    query = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r"
    with pytest.raises(TetherError, match="time limit"):
        run_remote_query(query, found, cache, time_limit_s=0.5)


def test_a_streaming_result_past_the_time_limit_is_a_clear_error(served) -> None:
    _, found, cache = served
    with pytest.raises(TetherError, match="time limit"):
        run_remote_query("SELECT range AS a FROM range(10000000000)", found, cache,
                         time_limit_s=0.5)


def test_a_failed_query_leaves_no_partial_file(served) -> None:
    _, found, cache = served
    for query in ("SELECT 1/0 AS x FROM train",  # DuckDB: a division by zero is NULL, runs
                  "SELECT CAST('a' AS INTEGER) AS x FROM train",
                  "SELECT range AS a FROM range(10000000000)"):
        with contextlib.suppress(Exception):  # the kind of error has its own test
            run_remote_query(query, found, cache, time_limit_s=0.5)
    leftovers = [p.name for p in _snapshots(cache) if p.name.endswith(".partial")]
    assert leftovers == []


def test_concurrent_identical_queries_make_one_snapshot_with_the_same_rows(served) -> None:
    _, found, cache = served
    query = "SELECT id, x * 2 AS y FROM train WHERE id % 7 = 0 ORDER BY id"
    results, errors = [], []

    def run() -> None:
        try:
            results.append(run_remote_query(query, found, cache))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(results) == 6
    assert len({str(r.paths[0]) for r in results}) == 1
    assert _rows(results[0]) == [{"id": i, "y": i / 5} for i in range(0, 1000, 7)]
    assert not [p for p in _snapshots(cache) if p.name.endswith(".partial")]


def test_a_remote_querys_result_is_capped_in_bytes(served, monkeypatch) -> None:
    _, found, cache = served
    assert remote_sql.MAX_RESULT_BYTES == 4 << 30
    with pytest.raises(TetherError, match="(?i)bytes|too large|size"):
        run_remote_query("SELECT range AS a FROM range(2000000)", found, cache,  # 16 MB
                         max_result_bytes=1 << 20)
    assert [p.name for p in _snapshots(cache)] == ["hidden.items-0123456789abcdef.arrow"]


def test_remote_query_snapshots_do_not_accumulate_without_bound(served) -> None:
    _, found, cache = served
    results = [run_remote_query(f"SELECT id + {i} AS v FROM train", found, cache).paths[0]
               for i in range(12)]
    remote = {p for p in _snapshots(cache) if p.name.startswith("sql.")}
    assert remote == set(results[-remote_sql.KEPT_RESULTS:])  # the newest 8, no more


def _querying_daemon(tmp_path: Path) -> str:
    """The start of a script that is a daemon's side of remote queries over a
    small table, warmed up, its peak memory reset: `found`, `cache`, `before`."""
    return OWN_PEAK + textwrap.dedent(f"""
        from pathlib import Path
        import numpy as np, pyarrow as pa, pyarrow.parquet as pq
        from tether.daemon.prepare.remote_sql import run_remote_query
        from tether.daemon.sources import discover
        data = Path({str(tmp_path)!r}) / "data"
        data.mkdir()
        pq.write_table(pa.table({{"id": np.arange(10)}}), data / "train.parquet")
        found, cache = discover(data), data.parent / "cache"
        run_remote_query("SELECT 1 AS warm", found, cache)
        reset_peak()  # (a child's ru_maxrss starts at pytest's peak: tests/conftest.py)
        before = peak_mb()
    """)


def test_a_remote_querys_memory_limit_bounds_the_daemon(tmp_path: Path) -> None:
    script = _querying_daemon(tmp_path) + textwrap.dedent("""
        try:
            run_remote_query("SELECT repeat('x', 4000) AS s FROM range(100000)", found,
                             cache, memory_limit="64MB")
        except Exception as exc:
            print("refused", type(exc).__name__)
        print(int(peak_mb() - before))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, cwd=HERE, check=True).stdout
    grown_mb = int(out.split()[-1])
    assert grown_mb < 200, f"the daemon grew {grown_mb} MB under a 64 MB query limit"


def test_a_string_bomb_fails_in_its_query_process_not_the_daemon(tmp_path: Path) -> None:
    """Issue 23 (1): `length(repeat(repeat('a', 1000000), 1900))`, memory DuckDB's
    limit does not count, took the daemon to 3,897 MB; two could run at once.
    Each query runs in a process the operating system bounds: both fail there,
    saying so, and the daemon's own memory does not move."""
    script = _querying_daemon(tmp_path) + textwrap.dedent("""
        import threading
        said = []
        def bomb():
            try:
                run_remote_query("SELECT length(repeat(repeat('a', 1000000), 1900)) AS n",
                                 found, cache)
                said.append("ran")
            except Exception as exc:
                said.append(str(exc))
        threads = [threading.Thread(target=bomb) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(repr(said))
        print(int(peak_mb() - before))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, cwd=HERE, check=True).stdout.splitlines()
    said, grown_mb = eval(out[-2]), int(out[-1])  # noqa: S307 (our own repr)
    assert len(said) == 2 and all("memory" in text.lower() for text in said), said
    assert grown_mb < 50, f"the daemon grew {grown_mb} MB"


def test_remote_queries_run_a_bounded_number_at_a_time(served, monkeypatch) -> None:
    _, found, cache = served
    running, most, lock = [0], [0], threading.Lock()
    real = remote_sql._in_process  # (the daemon's side: the query runs in a process)

    def slow_rows(*args):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            time.sleep(0.3)
            return real(*args)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(remote_sql, "_in_process", slow_rows)
    threads = [threading.Thread(target=lambda i=i: _quiet(run_remote_query,
                                                          f"SELECT {i} AS v", found, cache))
               for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert most[0] <= 4, f"{most[0]} remote queries ran at once"


def _quiet(function, *args) -> None:
    with contextlib.suppress(TetherError):
        function(*args)


def test_a_dataset_whose_name_holds_a_quote_can_be_queried(served) -> None:
    data, _, cache = served
    conn = sqlite3.connect(data / "shop.sqlite")
    conn.execute('CREATE TABLE "we""ird" (id INTEGER)')
    conn.execute('INSERT INTO "we""ird" VALUES (5)')
    conn.commit()
    conn.close()
    found = discover(data)
    assert 'shop.we"ird' in {f.name for f in found}
    source = run_remote_query('SELECT id FROM "shop.we""ird"', found, cache)
    assert _rows(source) == [{"id": 5}]


# --- filters ------------------------------------------------------------------

class _Table:
    """The smallest Source the filter index needs, over a pyarrow table."""

    def __init__(self, table: pa.Table, fingerprint: str = "v1") -> None:
        self.table = table
        self.fingerprint = fingerprint
        self.num_rows = table.num_rows
        self.name = "t"

    def filter_blocks(self, names):
        return iter(self.table.select(names).to_batches(max_chunksize=50_000))


def test_filter_limits_refuse_clearly_and_quickly() -> None:
    started = time.monotonic()
    big_list = "x in (" + ", ".join(map(str, range(10_001))) + ")"
    for text, says in [(big_list, "(?i)10,?000"),
                       ("(" * 101 + "x" + ")" * 101 + " > 1", "(?i)deep|nest"),
                       ("x > 1 and " * 1200 + "x > 1", "(?i)10,?000|long|characters"),
                       ("x > 1 > 2", "a < b and b < c"),
                       ("__import__('os')", "(?i)expected|position")]:
        with pytest.raises(TetherError, match=says):
            filters.parse(text)
    assert time.monotonic() - started < 5


def test_a_filter_whose_cost_is_its_length_is_refused() -> None:
    """Issue 23 (2): `x*x*x*...*x > k or ...`, under 10,000 characters, cost 32 s
    of daemon CPU on 4M rows. Operations are capped: the cost grows with rows."""
    bomb = " or ".join([" * ".join(["x"] * 40) + " > 5"] * 20)
    assert len(bomb) < 10_000
    with pytest.raises(TetherError, match=r"1,6\d\d operations; the limit is 256"):
        filters.parse(bomb)
    assert filters.parse(" + ".join(["x * x"] * 60) + " > 1").nodes <= 256  # still allowed
    # Found by a review: '%' is built from kernels that use each side several
    # times, unshared, so each nested '%' multiplied the cost by about 8:
    # `x % 7 % 7 % 7 % 7 % 7 > 0`, 13 nodes, took 8.4 s of CPU on 65,536 rows.
    with pytest.raises(TetherError, match="operations; the limit is 256"):
        filters.parse("x % 7 % 7 % 7 % 7 % 7 > 0")
    table = pa.table({"x": np.arange(-50, 50)})
    assert list(np.flatnonzero(filters.evaluate(filters.parse("x % 7 % 3 == 1"), table))) == \
        [i for i, x in enumerate(range(-50, 50)) if x % 7 % 3 == 1]


# 241 operations, under the cap, and 16M rows: several seconds of CPU a filter.
HEAVY = " + ".join(["x * x"] * 60) + " > {}"


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="module")
def heavy_rows(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("heavy") / "big"
    folder.mkdir()
    np.save(folder / "x.npy", np.random.default_rng(0).random(16_000_000, dtype=np.float32))
    return folder


def test_filter_cpu_stops_when_its_callers_leave(heavy_rows: Path, tmp_path: Path) -> None:
    """Four callers that gave up after 1 s left the daemon burning both cores for
    about 50 s. Now each filter stops at its next block once its caller is gone,
    and at most two are evaluated at once; the daemon serves on."""
    with DaemonProcess([heavy_rows], tmp_path / "state") as daemon:
        def give_up(i: int) -> None:
            with tether.connect(daemon.url, timeout=1.0) as client, \
                    pytest.raises(TetherError):
                client.describe("big", filter=HEAVY.format(i))  # each its own filter

        callers = [threading.Thread(target=give_up, args=(i,)) for i in range(4)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(30)
        time.sleep(1.0)  # the blocks under way finish (a fraction of a second of CPU each)
        before = _cpu_seconds(daemon.proc.pid)
        time.sleep(2.0)
        burnt = _cpu_seconds(daemon.proc.pid) - before
        with tether.connect(daemon.url) as client:
            assert client.describe("big").num_rows == 16_000_000
    assert burnt < 0.5, f"{burnt:.1f} s of CPU after every caller had left"


def test_a_filter_index_is_written_to_disk_not_held(heavy_rows: Path, tmp_path: Path) -> None:
    """Found measuring the attacks together (python -m tether.bench.attacks): a
    filter that keeps all 16M rows held its 128 MB of row numbers, twice while
    joined, in the daemon. They are written to the index file a block at a time."""
    with DaemonProcess([heavy_rows], tmp_path / "state") as daemon, \
            tether.connect(daemon.url) as client:
        peak = AnonPeak(daemon.proc.pid)
        assert client.describe("big", filter="x >= 0").matching_rows == 16_000_000
        grew = peak.growth()
    assert grew < 64, f"the daemon grew {grew:.0f} MB for a 128 MB index"


def test_a_filter_past_its_time_limit_is_a_clear_error(heavy_rows: Path, tmp_path: Path,
                                                      monkeypatch) -> None:
    monkeypatch.setenv("TETHER_FILTER_SECONDS", "0.5")
    with DaemonProcess([heavy_rows], tmp_path / "state") as daemon, \
            tether.connect(daemon.url) as client, \
            pytest.raises(TetherError, match="ran past its time limit"):
        client.describe("big", filter=HEAVY.format(-1))


def test_the_largest_filter_allowed_evaluates_in_bounded_time() -> None:
    """A 10,000-item list on each of several columns and arithmetic near the depth limit."""
    n = 200_000
    table = pa.table({c: np.arange(n) % 1000 for c in "abcd"})
    items = ", ".join(map(str, range(0, 1600, 2)))  # 800 items a list, ~9,000 chars in all
    text = " or ".join(f"{c} in ({items})" for c in "ab")
    assert len(text) <= 10_000
    expr = filters.parse(text)
    deep = filters.parse("(" * 45 + "a" + " + 1)" * 45 + " > 0")
    started = time.monotonic()
    got = filters.evaluate(expr, table)
    filters.evaluate(deep, table)
    assert time.monotonic() - started < 10
    assert int(np.count_nonzero(np.asarray(got))) == n // 2


def test_concurrent_streams_with_one_filter_compute_it_once(tmp_path: Path) -> None:
    index = FilterIndex(tmp_path)
    source = _Table(pa.table({"x": np.arange(100_000)}))
    expr = filters.parse("x % 3 = 0")
    out = []
    threads = [threading.Thread(target=lambda: out.append(index.rows(source, expr)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(out) == 8 and all(np.array_equal(o, np.arange(0, 100_000, 3)) for o in out)
    assert [p.suffix for p in (tmp_path / "filters").iterdir()] == [".npy"]


def test_the_filter_index_cache_is_bounded(tmp_path: Path) -> None:
    index = FilterIndex(tmp_path)
    source = _Table(pa.table({"x": np.arange(10_000)}))
    for i in range(40):
        index.rows(source, filters.parse(f"x >= 0 or x = {i}"))
    files = list((tmp_path / "filters").iterdir())
    assert len(files) == filtering.KEPT_ON_DISK  # 32 of the 40, no more


def test_filter_edge_cases_through_the_daemon(tmp_path: Path, serve) -> None:
    """Nulls in a delivered column, a list column, type confusion: clear errors,
    and the daemon still serves."""
    folder = tmp_path / "data"
    folder.mkdir()
    pq.write_table(pa.table({
        "id": np.arange(100),
        "maybe": pa.array([None if i % 10 == 0 else float(i) for i in range(100)]),
        "count": pa.array([None if i % 10 == 0 else i for i in range(100)]),
        "seq": pa.array([[i] * (i % 3) for i in range(100)], pa.list_(pa.int64())),
        "name": [f"n{i}" for i in range(100)],
    }), folder / "t.parquet")
    daemon = serve(folder / "t.parquet")
    cases = [
        # an int column with nulls, delivered: refused at open, naming the options
        (dict(filter="count is not null", columns=["id", "count"]), "fill_null="),
        (dict(filter="maybe > 5", columns=["id", "count"]), "null_masks="),
        (dict(filter="seq > 1"), "seq"),
        (dict(filter="name > 3"), "name"),
        (dict(filter="id + name > 3"), "name"),
        (dict(filter="nosuch = 1"), "(?i)nosuch"),
        (dict(filter="id < 0"), "(?i)no row"),
        (dict(filter="id = 'x'"), "id"),
        (dict(filter="id = 9223372036854775807 * 4"), "overflow"),
    ]
    for options, says in cases:
        with pytest.raises(TetherError, match=says) as err, \
                tether.Loader(daemon.url, dataset="t", batch_size=10, **options) as loader:
            list(loader)
        assert "internal error" not in str(err.value), (options, str(err.value))
    with tether.Loader(daemon.url, dataset="t", batch_size=10, columns=["id"],
                       filter="maybe is null") as loader:
        got = np.concatenate([b["id"] for b in loader])
    assert sorted(got.tolist()) == list(range(0, 100, 10))
    with tether.Loader(daemon.url, dataset="t", batch_size=100, columns=["maybe"]) as loader:
        maybe = next(iter(loader))["maybe"]  # a float's nulls are NaN
    assert np.isnan(maybe).sum() == 10


# --- SQLite files in the served folder ----------------------------------------

def test_a_hostile_sqlite_file_gives_clear_errors_and_nothing_else(tmp_path: Path) -> None:
    from tether.daemon.prepare.catalog import Catalog

    folder = tmp_path / "data"
    folder.mkdir()
    db = folder / "evil.sqlite"
    conn = sqlite3.connect(db)
    conn.executescript("""
        CREATE TABLE "we""ird; DROP TABLE t; --" (id INTEGER);
        INSERT INTO "we""ird; DROP TABLE t; --" VALUES (1), (2);
        CREATE TABLE "ünï ☃" (v TEXT);
        INSERT INTO "ünï ☃" VALUES ('snow');
        CREATE TABLE t (id INTEGER);
        INSERT INTO t VALUES (7);
        CREATE TABLE log (what TEXT);
        CREATE TRIGGER t_read AFTER INSERT ON t BEGIN INSERT INTO log VALUES ('fired'); END;
        CREATE VIEW ext AS SELECT load_extension('/tmp/nope.so') AS x;
        CREATE VIEW reads AS SELECT readfile('/etc/passwd') AS x;
        CREATE VIEW big AS SELECT zeroblob(1000) AS b;
    """)
    conn.commit()
    conn.close()
    before = db.read_bytes()
    catalog = Catalog([folder], tmp_path / "cache")
    names = {d.name: d for d in catalog.infos()}
    assert {"evil.we\"ird; DROP TABLE t; --", "evil.ünï ☃", "evil.t", "evil.ext",
            "evil.reads"} <= set(names)
    source = catalog.get('evil.we"ird; DROP TABLE t; --')
    assert source.num_rows == 2
    assert catalog.get("evil.t").num_rows == 1
    for name, says in (("evil.ext", "(?i)not authorized|load_extension"),
                       ("evil.reads", "(?i)readfile")):
        with pytest.raises(TetherError, match=says):
            catalog.get(name)
    assert db.read_bytes() == before  # read-only: nothing written, no trigger fired


# --- transforms -----------------------------------------------------------------

HOSTILE = '''
import os, sys, time
import numpy as np

def exits(chunk):
    raise SystemExit(3)

def interrupts(chunk):
    raise KeyboardInterrupt

def dies(chunk):
    os._exit(9)

def chatty(chunk):
    print("tether://evil:1/?token=fake", flush=True)
    print("noise " * 100, flush=True)
    return {"id": chunk["id"]}

def junk(chunk):
    return {"id": np.array([object()] * len(chunk["id"]))}

def forever(chunk):
    while True:
        time.sleep(1)
'''


@pytest.fixture
def hostile(tmp_path: Path, monkeypatch) -> Path:
    code = tmp_path / "code"
    code.mkdir()
    (code / "hostile.py").write_text(HOSTILE)
    monkeypatch.setenv("PYTHONPATH", str(code))
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    data = tmp_path / "data"
    data.mkdir()
    for name in ("a", "b", "c", "d", "e", "ok"):  # a folder of parts each: one dataset each
        (data / name).mkdir()
        pq.write_table(pa.table({"id": np.arange(50, dtype=np.int64)}), data / name / "0.parquet")
    return data


def test_hostile_transforms_are_clear_errors_and_the_daemon_serves_on(
        hostile: Path, tmp_path: Path) -> None:
    args = ["--transform", "a=hostile:dies", "--transform", "b=hostile:chatty",
            "--transform", "c=hostile:junk"]
    with DaemonProcess([hostile], tmp_path / "state", *args) as daemon:
        assert daemon.url.startswith("tether://")  # a worker's print did not replace it
        client = daemon.client()
        with pytest.raises(TetherError, match="worker process died"):
            client.describe("a")
        with pytest.raises(TetherError, match="object array"):
            client.describe("c")
        with tether.Loader(daemon.url, dataset="b", batch_size=10) as loader:
            assert sorted(np.concatenate([x["id"] for x in loader]).tolist()) == list(range(50))
        with tether.Loader(daemon.url, dataset="ok", batch_size=10) as loader:
            assert sum(len(x["id"]) for x in loader) == 50
        assert daemon.stop() == 0


def test_a_transform_raising_systemexit_is_a_clear_error(hostile: Path, tmp_path: Path) -> None:
    args = ["--transform", "d=hostile:exits", "--transform", "e=hostile:interrupts"]
    with DaemonProcess([hostile], tmp_path / "state", *args) as daemon:
        client = daemon.client()
        for name, says in (("d", "SystemExit"), ("e", "KeyboardInterrupt")):
            with pytest.raises(TetherError, match=f"transform hostile:.*{says}") as err:
                client.describe(name)
            assert "internal error" not in str(err.value)
        with tether.Loader(daemon.url, dataset="ok", batch_size=10) as loader:
            assert sum(len(x["id"]) for x in loader) == 50
        assert daemon.stop() == 0


def test_a_transform_that_never_returns_does_not_stop_the_daemon_stopping(
        hostile: Path, tmp_path: Path) -> None:
    with DaemonProcess([hostile], tmp_path / "state", "--transform", "a=hostile:forever"
                       ) as daemon:
        client = daemon.client()
        listed = {d.name: d for d in client.datasets()}
        assert listed["a"].error.startswith("preparing")
        with tether.Loader(daemon.url, dataset="ok", batch_size=10) as loader:
            assert sum(len(x["id"]) for x in loader) == 50
        assert daemon.stop(timeout=8) == 0  # not killed after the 8 s it was given


# --- PostgreSQL: hostile table names, the password never shown ------------------

def test_postgres_hostile_table_names_and_no_password_anywhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    psycopg = pytest.importorskip("psycopg", reason="pip install -e '.[postgres]'")
    from ..postgres import PASSWORD, running_server

    with running_server() as server:
        url = server.create_database("hostile")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute('CREATE TABLE "we""ird; DROP TABLE plain; --" (id int8)')
            conn.execute('INSERT INTO "we""ird; DROP TABLE plain; --" '
                         "SELECT g FROM generate_series(0, 9) g")
            conn.execute('CREATE SCHEMA "s.""q"')
            conn.execute('CREATE TABLE "s.""q"."ünï ☃" (v text)')
            conn.execute('INSERT INTO "s.""q"."ünï ☃" VALUES (\'snow\')')
            conn.execute("CREATE TABLE plain (id int8)")
            conn.execute("INSERT INTO plain VALUES (1)")
        monkeypatch.setenv("PGPASSWORD", PASSWORD)
        weird = 'hostile.we"ird; DROP TABLE plain; --'
        with DaemonProcess([without_password(url)], tmp_path / "state", "--allow-sql",
                           "--log-level", "debug") as daemon:
            client = daemon.client()
            listing = {d.name: d for d in client.datasets()}
            assert {weird, 'hostile.s."q.ünï ☃', "hostile.plain"} <= set(listing)
            with tether.Loader(daemon.url, dataset=weird, batch_size=5) as loader:
                assert sorted(np.concatenate([b["id"] for b in loader]).tolist()) == \
                    list(range(10))
            query = 'SELECT count(*) AS n FROM "hostile.plain"'
            with tether.Loader(daemon.url, sql=query, batch_size=1) as loader:
                assert [int(b["n"][0]) for b in loader] == [1]
            with pytest.raises(TetherError) as failed:
                iter(tether.Loader(daemon.url, sql="SELECT nosuch FROM \"hostile.plain\"",
                                   batch_size=1))
            shown = repr(listing) + str(failed.value)
            stderr = daemon.stderr_text()
        ls = subprocess.run([sys.executable, "-m", "tether.daemon", "ls", daemon.url],
                            capture_output=True, text=True, timeout=60, cwd=HERE)
        with psycopg.connect(url) as conn:  # nothing was dropped
            assert conn.execute("SELECT count(*) FROM plain").fetchone()[0] == 1
    names = " ".join(p.name for p in (tmp_path / "state").rglob("*"))
    for text in (stderr, shown, names, ls.stdout + ls.stderr):
        assert PASSWORD not in text
