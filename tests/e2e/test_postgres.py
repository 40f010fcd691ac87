"""`tether serve postgresql://...`: each readable table a dataset, snapshotted,
the password never shown. Against a real PostgreSQL server (tests/postgres.py)."""

from __future__ import annotations

import itertools
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import tether
from tether.daemon.sources import postgres
from tether.daemon.sources.postgres import (
    PostgresTableSource,
    discover_database,
    query_batches,
    redact,
    scrub,
)

from ..conftest import collect

# The daemon's postgres extra; CI's oldest-versions run (the loader's side) lacks it.
psycopg = pytest.importorskip("psycopg", reason="pip install -e '.[postgres]'")

from ..postgres import PASSWORD, Server, running_server  # noqa: E402 (needs psycopg)

_names = itertools.count()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server() as started:
        yield started


@pytest.fixture
def database(server: Server) -> tuple[str, str]:
    """A fresh database: its name and URL (password included)."""
    name = f"shop{next(_names)}"
    return name, server.create_database(name)


@pytest.fixture(autouse=True)
def _fresh_listings() -> Iterator[None]:
    postgres._listed.clear()  # each test lists its database anew
    yield
    postgres._listed.clear()


def run_sql(url: str, *statements: str, params: tuple = ()) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement, params or None)


def read_snapshot(source: PostgresTableSource) -> pa.Table:
    return pa.ipc.open_file(str(source.paths[0])).read_all()


def by_name(found: list) -> dict:
    return {f.name: f for f in found}


# --- redact and scrub, no server needed ---

@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://ann:s3cret@db.example:5432/shop", "postgresql://ann@db.example:5432/shop"),
    ("postgres://ann:p%40ss%3Aw@host/shop", "postgres://ann@host/shop"),
    ("postgresql://ann@host/shop", "postgresql://ann@host/shop"),
    ("postgresql://host/shop", "postgresql://host/shop"),
    ("POSTGRESQL://ann:x:y@host/shop?sslmode=require",
     "POSTGRESQL://ann@host/shop?sslmode=require"),
    ("postgresql://ann:pa/s@s@host/shop", "postgresql://ann@host/shop"),
    ("postgresql://ann@host/shop?password=s3cret&sslmode=require",
     "postgresql://ann@host/shop?password=***&sslmode=require"),
])
def test_redact_removes_the_password(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_scrub_removes_passwords_quoted_by_psycopg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", "from-the-env")
    url = "postgresql://ann:p%40ss@host/shop"
    message = ('missing "=" after "postgresql://ann:p%40ss@host/shop" in connection info; '
               "password=p@ss host=h; password 'from-the-env' rejected; other "
               "postgres://bob:hunter22@elsewhere/db")
    cleaned = scrub(message, url)
    for secret in ("p%40ss", "p@ss", "from-the-env", "hunter22"):
        assert secret not in cleaned
    assert "postgresql://ann@host/shop" in cleaned


# --- against the server ---

def test_each_readable_table_is_a_dataset_with_its_rows(
        database: tuple[str, str], server: Server, tmp_path: Path) -> None:
    name, url = database
    run_sql(url,
            "CREATE TABLE items (id int8, small int2, count int4, price numeric, ratio float4, "
            "score float8, ok bool, label text, code varchar(8), blob bytea, tags int4[], "
            "weights float8[], at timestamp, day date)",
            "INSERT INTO items VALUES (1, 2, 3, 4.25, 0.5, 1.5, true, 'héllo', 'ab', "
            "'\\x00ff10', '{1,2,NULL}', '{0.5}', '2024-01-02 03:04:05', '2024-01-02'), "
            "(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
            "CREATE SCHEMA extra",
            "CREATE TABLE extra.events (x int4)",
            "INSERT INTO extra.events SELECT generate_series(1, 5)")
    with server.admin(name) as admin:  # a table the user may not read is not served
        admin.execute("CREATE TABLE hidden (x int)")

    found = by_name(discover_database(url))
    assert set(found) == {f"{name}.items", f"{name}.extra.events"}
    for f in found.values():
        assert f.origin.startswith(f"postgresql://ann@127.0.0.1:{server.port}/{name} table ")
        assert PASSWORD not in f.origin and PASSWORD not in repr(f)
    assert found[f"{name}.extra.events"].origin.endswith("table extra.events")

    source = found[f"{name}.items"].open(tmp_path)
    assert source.format == "postgresql" and source.num_rows == 2
    assert source.snapshot_time > 0
    table = read_snapshot(source)
    assert table.schema == pa.schema([
        ("id", pa.int64()), ("small", pa.int16()), ("count", pa.int32()),
        ("price", pa.float64()), ("ratio", pa.float32()), ("score", pa.float64()),
        ("ok", pa.bool_()), ("label", pa.string()), ("code", pa.string()),
        ("blob", pa.binary()), ("tags", pa.list_(pa.int32())),
        ("weights", pa.list_(pa.float64())), ("at", pa.timestamp("us")), ("day", pa.date32())])
    first, second = table.to_pylist()
    assert first["price"] == 4.25 and first["label"] == "héllo" and first["code"] == "ab"
    assert first["blob"] == b"\x00\xff\x10" and first["tags"] == [1, 2, None]
    assert first["weights"] == [0.5] and first["ok"] is True
    assert str(first["at"]) == "2024-01-02 03:04:05" and str(first["day"]) == "2024-01-02"
    assert second == {"id": 2, **{k: None for k in first if k != "id"}}  # NULLs kept
    # Numbers become tensors, text is served as text, times as datetime64.
    assert source.columns["price"].dtype == np.float64 and not source.columns["id"].unsupported
    assert source.columns["label"].kind == "utf8"
    assert source.columns["at"].dtype == np.dtype("<M8[us]")
    assert source.columns["day"].dtype == np.dtype("<M8[D]")
    assert source.columns["at"].nulls == source.columns["day"].nulls == 1

    events = found[f"{name}.extra.events"].open(tmp_path)
    assert read_snapshot(events).column("x").to_pylist() == [1, 2, 3, 4, 5]


def test_the_snapshot_is_served_until_refresh(database: tuple[str, str],
                                              tmp_path: Path) -> None:
    name, url = database
    run_sql(url, "CREATE TABLE items (id int8)", "INSERT INTO items VALUES (1), (2)")
    found = by_name(discover_database(url))[f"{name}.items"]
    first = found.open(tmp_path)

    run_sql(url, "INSERT INTO items VALUES (3)")  # the table changes after the snapshot
    again = found.open(tmp_path)  # a restart: the same cache
    assert again.num_rows == 2 and again.paths == first.paths
    assert again.snapshot_time == first.snapshot_time

    refreshed = by_name(discover_database(url, refresh=True))[f"{name}.items"].open(tmp_path)
    assert refreshed.num_rows == 3
    assert read_snapshot(refreshed).column("id").to_pylist() == [1, 2, 3]


def test_the_password_may_come_from_pgpassword(database: tuple[str, str], server: Server,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    name, _ = database
    bare = server.url(name, password=False)
    assert discover_database(bare) == []  # no password: logged, nothing served
    postgres._listed.clear()
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    run_sql(bare, "CREATE TABLE items (id int8)")
    assert [f.name for f in discover_database(bare)] == [f"{name}.items"]


def test_query_batches_reads_in_chunks_read_only(database: tuple[str, str]) -> None:
    _, url = database
    run_sql(url, "CREATE TABLE big (id int8)",
            "INSERT INTO big SELECT generate_series(1, 70000)")
    schema, batches = query_batches(url, "SELECT id, id * 0.5 AS half FROM big ORDER BY id")
    assert schema == pa.schema([("id", pa.int64()), ("half", pa.float64())])
    sizes = [b.num_rows for b in batches]
    assert sizes == [postgres.FETCH_ROWS, 70000 - postgres.FETCH_ROWS]

    run_sql(url, "CREATE SEQUENCE counter")
    with pytest.raises(postgres.DatabaseError, match="read-only transaction"):
        list(query_batches(url, "SELECT nextval('counter')")[1])  # a write, refused
    with pytest.raises(postgres.DatabaseError, match="the query failed.*no_such_table"):
        query_batches(url, "SELECT * FROM no_such_table")


def test_an_unreachable_server_is_logged_without_its_password(
        server: Server, caplog: pytest.LogCaptureFixture) -> None:
    closed = f"postgresql://ann:{PASSWORD}@127.0.0.1:1/shop"
    wrong = server.url("postgres").replace(PASSWORD, PASSWORD[::-1])
    with caplog.at_level(logging.ERROR):
        assert discover_database(closed) == []
        assert discover_database(wrong) == []
    assert "postgresql://ann@127.0.0.1:1/shop" in caplog.text
    assert "password authentication failed" in caplog.text
    assert PASSWORD not in caplog.text and PASSWORD[::-1] not in caplog.text
    with pytest.raises(postgres.DatabaseError) as raised:  # a URL psycopg cannot parse
        query_batches(f"postgresql://ann:{PASSWORD}@127.0.0.1:notaport/shop", "SELECT 1")
    assert PASSWORD not in str(raised.value) and raised.value.__cause__ is None


def test_daemon_streams_a_table_and_never_shows_the_password(
        database: tuple[str, str], tmp_path: Path) -> None:
    """Served from Python (tether.serve), where a password in the URL is
    accepted: it reaches the daemon through a private passfile, never its
    command line (which `ps` shows) nor its log."""
    name, url = database
    run_sql(url, "CREATE TABLE items (id int8, price float8, qty int4, weight numeric)",
            "INSERT INTO items SELECT g, g * 0.25, g % 7, g / 3.0 "
            "FROM generate_series(0, 999) g")
    run_sql(url, "CREATE TABLE other (x int4)")
    (tmp_path / "files").mkdir()
    np.save(tmp_path / "files" / "local.npy", np.arange(10))
    unreachable = f"postgresql://ann:{PASSWORD}@127.0.0.1:1/gone?password={PASSWORD}"
    with tether.serve(url, unreachable, tmp_path / "files", state_dir=tmp_path / "state") \
            as server:
        command_line = Path(f"/proc/{server.pid}/cmdline").read_bytes()
        passfile = Path(server._passfile)
        assert passfile.stat().st_mode & 0o077 == 0  # the owner's alone
        loader = tether.Loader(server.url, dataset=f"{name}.items", batch_size=64,
                               shuffle=True, seed=0)
        _, got = collect(loader)
        with tether.connect(server.url) as client:
            listing = {d.name: d for d in client.datasets()}
        stderr = server.log()
    assert PASSWORD.encode() not in command_line and b"127.0.0.1:1/gone" in command_line
    assert not passfile.exists()  # removed with the daemon
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id, price, qty, weight::float8 FROM items").fetchall()
    order = np.argsort(got["id"])
    assert sorted(got["id"].tolist()) == list(range(1000))  # every row once
    assert not np.array_equal(got["id"], np.sort(got["id"]))  # shuffled
    expected = np.array(rows)
    for i, column in enumerate(("id", "price", "qty", "weight")):
        np.testing.assert_array_equal(got[column][order], expected[:, i].astype(got[column].dtype))
    assert {f"{name}.items", f"{name}.other", "files"} <= set(listing)
    assert listing[f"{name}.items"].format == "postgresql"
    assert listing[f"{name}.items"].snapshot_time > 0
    assert "127.0.0.1:1/gone" in stderr  # the unreachable one is named, redacted
    assert PASSWORD not in stderr


def test_a_password_on_the_command_line_is_refused(tmp_path: Path) -> None:
    """Issue 23 (7): `tether serve postgresql://ann:S3cret@host/shop` was
    accepted, the password in `ps` for the daemon's life."""
    for url in (f"postgresql://ann:{PASSWORD}@127.0.0.1:1/shop",
                f"postgres://ann@127.0.0.1:1/shop?sslmode=disable&password={PASSWORD}",
                f"postgresql://ann@127.0.0.1:1/shop?pass%77ord={PASSWORD}"):  # (a review)
        done = subprocess.run([sys.executable, "-m", "tether.daemon", url, "--state-dir",
                               str(tmp_path)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2
        assert "PGPASSWORD" in done.stderr and "tether.serve" in done.stderr
        assert PASSWORD not in done.stderr
    with pytest.raises(ValueError, match="USER:PASSWORD@HOST"):  # nor hidden from tether.serve
        tether.serve(f"postgresql://ann@127.0.0.1:1/shop?%70assword={PASSWORD}",
                     state_dir=tmp_path / "state")


def test_a_daemon_with_only_an_unreachable_database_fails_clearly(tmp_path: Path) -> None:
    unreachable = f"postgresql://ann:{PASSWORD}@127.0.0.1:1/gone"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    private = tmp_path / "state" / "private"
    private.mkdir(parents=True)
    (private / f"pgpass-{gone.pid}-x").write_text("*:*:*:ann:old")  # its process died
    with pytest.raises(RuntimeError) as raised:
        tether.serve(unreachable, state_dir=tmp_path / "state")
    assert "postgresql://ann@127.0.0.1:1/gone" in str(raised.value)
    assert "no dataset found" in str(raised.value)
    assert PASSWORD not in str(raised.value)
    assert not list((tmp_path / "state" / "private").glob("pgpass-*"))  # its own, and
    # (found by a review) the one a killed process left behind


_SNAPSHOT_MEMORY = textwrap.dedent("""
    import sys, tempfile
    from pathlib import Path
    from tether.daemon.sources.postgres import discover_database

    def high_water_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

    found = {f.name: f for f in discover_database(sys.argv[1])}[sys.argv[2]]
    before = high_water_mb()
    source = found.open(Path(tempfile.mkdtemp()))
    print(source.num_rows, high_water_mb() - before)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_a_large_table_is_snapshotted_in_bounded_memory(database: tuple[str, str]) -> None:
    name, url = database
    rows = 2_000_000
    run_sql(url, "CREATE TABLE big (id int8, x float8, label int4)",
            f"INSERT INTO big SELECT g, g * 0.5, g % 10 FROM generate_series(1, {rows}) g")
    done = subprocess.run([sys.executable, "-c", _SNAPSHOT_MEMORY, url, f"{name}.big"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    served, growth_mb = done.stdout.split()
    assert int(served) == rows
    # Measured: ~70 MB, reached at the first chunk of 65,536 rows (libpq's result,
    # the Python rows, Arrow's allocator) and flat after it. The whole table as
    # Python rows would be ~500 MB.
    assert float(growth_mb) < 120, f"snapshotting grew the process by {growth_mb} MB"
