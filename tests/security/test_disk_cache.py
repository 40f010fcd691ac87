"""Red-team of Loader(cache=...): each test pins a promise, most of them once
broken (the bug each reproduced is in the commit that fixed it).

Promises: delivery exactly as without the cache (whatever the cache holds),
stale rows never served, the daemon never dies of a bad Want, the limit and
pins respected, the cache directory safe (crash, two loaders, symlinks)."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

import tether
from tether.cache.directory import OVERHEAD_BYTES
from tether.cache.row_cache import CacheError, ColumnSpec, RowCache, cache_key
from tether.daemon.stream.wanted import WantedShards
from tether.wire.errors import RequestError
from tether.wire.plan import HostPlan, Layout
from tether.wire.v1 import tether_pb2 as pb

from ..conftest import DaemonProcess, collect
from ..e2e.test_cache import assert_same
from .test_access_and_uploads import _raw_stream

COLUMNS = [ColumnSpec("x", "<f4", (4,)), ColumnSpec("id", "<i8", ())]
ROW_BYTES = 4 * 4 + 8
NPY_ROW_BYTES = 8 + 32 + 48 + 4  # id, x, image, label of conftest.make_features
IDENTITY = {"dataset": "train", "fingerprint": "v1"}


def rows_of(ids) -> dict[str, np.ndarray]:
    ids = np.asarray(ids, dtype=np.int64)
    return {"x": np.repeat(ids[:, None], 4, axis=1).astype(np.float32), "id": ids}


def limit_for(rows: int, num_rows: int, row_bytes: int = ROW_BYTES) -> int:
    """The cache_limit that holds `rows` rows (a use stamp and a checksum each) and the index."""
    return rows * (row_bytes + 16) + num_rows * 4 + OVERHEAD_BYTES


def open_cache(root: Path, limit_rows: int = 1000, num_rows: int = 1000) -> RowCache:
    return RowCache(root, limit_for(limit_rows, num_rows), "train", IDENTITY, COLUMNS, num_rows)


def disk_bytes(root: Path) -> int:
    return sum(f.stat().st_blocks * 512 for f in root.rglob("*") if f.is_file())


# -- RowCache: the limit, the directory, the root ---------------------------


def test_a_lower_cache_limit_on_reopen_is_respected(tmp_path: Path) -> None:
    big = open_cache(tmp_path, limit_rows=1000)
    big.store(np.arange(1000), rows_of(range(1000)))
    big.close()
    small = open_cache(tmp_path, limit_rows=100)
    try:
        assert small.capacity <= 100
        small.store(np.arange(1000), rows_of(range(1000)))
    finally:
        small.close()
    assert disk_bytes(tmp_path) <= 100 * ROW_BYTES + 1000 * 4 + (64 << 10)


def test_a_limit_too_small_for_any_row_keeps_nothing_and_stays_exact(tmp_path: Path) -> None:
    cache = RowCache(tmp_path, 1, "train", IDENTITY, COLUMNS, 1000)
    assert cache.capacity == 0
    cache.store(np.arange(10), rows_of(range(10)))
    assert (cache.pin(np.arange(10)) < 0).all()
    cache.close()


def test_a_symlink_in_the_cache_root_does_not_break_the_loader(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "cache", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    (elsewhere / "meta.json").write_text('{"name": "train", "clean": true}')
    (elsewhere / "keep.txt").write_text("precious")
    (root / "link").symlink_to(elsewhere, target_is_directory=True)
    try:
        open_cache(root).close()
    finally:
        assert (elsewhere / "keep.txt").read_text() == "precious"
        assert sorted(p.name for p in elsewhere.iterdir()) == ["keep.txt", "meta.json"]


def test_a_symlinked_cache_directory_never_wipes_files_outside_the_root(tmp_path) -> None:
    root, victim = tmp_path / "cache", tmp_path / "home"
    root.mkdir()
    victim.mkdir()
    (victim / "thesis.tex").write_text("years of work")
    key = cache_key({**IDENTITY, "columns": [c.describe() for c in COLUMNS]})  # predictable
    (root / key).symlink_to(victim, target_is_directory=True)
    with contextlib.suppress(CacheError, OSError):  # refusing the link is fine
        open_cache(root).close()
    assert (victim / "thesis.tex").exists()
    assert not (victim / "column0.npy").exists()


def test_a_cache_path_that_is_a_file_is_refused_with_a_cache_error(tmp_path: Path) -> None:
    path = tmp_path / "cache"
    path.write_text("a file")
    with pytest.raises(CacheError):
        open_cache(path)


def _held_rows():
    """(gate, entered, Slow): Slow(rows) holds a store that reads it until gate is set."""
    gate, entered = threading.Event(), threading.Event()

    class Slow(dict):
        def __getitem__(self, name):
            entered.set()
            gate.wait(5)
            return super().__getitem__(name)

    return gate, entered, Slow


def test_two_stores_of_one_row_at_once_keep_one_slot(tmp_path: Path) -> None:
    cache = open_cache(tmp_path, limit_rows=10)
    gate, entered, Slow = _held_rows()

    first = threading.Thread(target=cache.store, args=(np.array([5]), Slow(rows_of([5]))))
    first.start()
    assert entered.wait(5)  # a slot is taken, its bytes not yet written
    cache.store(np.array([5]), rows_of([5]))
    gate.set()
    first.join()
    try:
        assert cache.rows_held == 1
    finally:
        cache.close()


def test_a_store_in_flight_at_close_never_corrupts_the_next_opener(tmp_path: Path) -> None:
    old = open_cache(tmp_path, limit_rows=10)
    gate, entered, Slow = _held_rows()

    late = threading.Thread(target=old.store, args=(np.array([5]), Slow(rows_of([5]))))
    late.start()
    assert entered.wait(5)  # a decode thread's merge, its slot taken
    threading.Timer(0.3, gate.set).start()
    old.close()  # loader._stop(), the decoder not waiting: close waits for the store
    late.join()
    new = open_cache(tmp_path, limit_rows=10)  # the next iteration
    assert new.rows_held == 1  # the late store finished, and counts
    new.store(np.array([7]), rows_of([7]))
    slots = new.pin(np.array([7]))
    try:
        np.testing.assert_array_equal(new.read(slots)["id"], [7])
    finally:
        new.close()


def test_one_full_directory_stays_within_the_limit(tmp_path: Path) -> None:
    limit = 10_000 * ROW_BYTES + 10_000 * 4
    cache = RowCache(tmp_path, limit, "a", {"dataset": "a"}, COLUMNS, 10_000)
    cache.store(np.arange(10_000), rows_of(range(10_000)))
    cache.close()
    assert disk_bytes(tmp_path) <= limit + (16 << 10)  # + meta.json and page rounding


def test_the_limit_holds_when_an_earlier_directory_fills_up_later(tmp_path: Path) -> None:
    limit = limit_for(10_000, 10_000)
    first = RowCache(tmp_path, limit, "a", {"dataset": "a"}, COLUMNS, 10_000)
    assert first.capacity == 10_000
    first.store(np.arange(10), rows_of(range(10)))  # one batch, then stopped
    first.close()
    second = RowCache(tmp_path, limit, "b", {"dataset": "b"}, COLUMNS, 4000)
    second.store(np.arange(4000), rows_of(range(4000)))
    second.close()
    first = RowCache(tmp_path, limit, "a", {"dataset": "a"}, COLUMNS, 10_000)
    first.store(np.arange(10_000), rows_of(range(10_000)))
    first.close()
    assert disk_bytes(tmp_path) <= limit + (64 << 10)


def test_the_row_index_stays_within_the_limit(tmp_path: Path) -> None:
    cache = RowCache(tmp_path, 100_000, "train", IDENTITY, COLUMNS, 1_000_000)
    cache.close()
    assert disk_bytes(tmp_path) <= 100_000 + (16 << 10)


def test_weird_column_names_stay_inside_the_cache_directory(tmp_path: Path) -> None:
    names = ["../../escape", "/etc/passwd", "meta.json", "lock", "", "\u00e9 \n\t"]
    columns = [ColumnSpec(name, "<i8", ()) for name in names]
    root = tmp_path / "cache"
    cache = RowCache(root, 1 << 20, "w", {"d": "w"}, columns, 50)
    cache.store(np.arange(50), {name: np.arange(50) * (i + 1) for i, name in enumerate(names)})
    cache.close()
    again = RowCache(root, 1 << 20, "w", {"d": "w"}, columns, 50)
    got = again.read(again.pin(np.arange(50)))
    again.close()
    for i, name in enumerate(names):
        np.testing.assert_array_equal(got[name], np.arange(50) * (i + 1))
    assert {p.parent for p in tmp_path.rglob("*") if p.is_file()} == {again.directory}


_FILL_A_SMALL_DISK = """
import sys, numpy as np
from tether.cache.row_cache import RowCache, ColumnSpec
cache = RowCache(sys.argv[1], 10 << 20, "t", {"d": 1}, [ColumnSpec("x", "<f4", (256,))], 4000)
for start in range(0, 4000, 100):
    cache.store(np.arange(start, start + 100), {"x": np.ones((100, 256), np.float32)})
cache.close()
"""


def test_a_disk_smaller_than_the_limit_never_kills_the_process(tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
            capture_output=True).returncode != 0:
        pytest.skip("needs a small filesystem (root may mount a tmpfs)")
    try:
        done = subprocess.run([sys.executable, "-c", _FILL_A_SMALL_DISK, str(mount / "c")],
                              capture_output=True, text=True, timeout=120)
    finally:
        subprocess.run(["umount", str(mount)], check=False)
    assert done.returncode != -signal.SIGBUS, "killed by SIGBUS"
    assert done.returncode == 0 or "CacheError" in done.stderr, done.stderr[-1000:]


def test_pinned_rows_survive_any_amount_of_stores(tmp_path: Path) -> None:
    cache = open_cache(tmp_path, limit_rows=64)
    cache.store(np.arange(32), rows_of(range(32)))
    slots = cache.pin(np.arange(32))
    for start in range(100, 900, 50):  # floods far past capacity
        cache.store(np.arange(start, start + 50), rows_of(range(start, start + 50)))
    np.testing.assert_array_equal(cache.read(slots)["id"], np.arange(32))
    cache.unpin(slots)
    assert cache.rows_held <= cache.capacity
    cache.close()


# -- the daemon's side: wants ------------------------------------------------

PLAN = HostPlan(Layout.random_access(100), batch_size=10, shuffle=True, seed=3,
                shard_rows=10, num_epochs=2)


def test_an_oversized_want_mask_is_refused_when_queued() -> None:
    wanted = WantedShards(PLAN, PLAN.first(), PLAN.shard)
    with pytest.raises(RequestError):
        wanted.add(pb.Want(epoch=0, sequence=0, have=b"\0" * (1 << 20)))


def _cpu_seconds(pid: int, over: float) -> float:
    def now() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    before = now()
    time.sleep(over)
    return now() - before


def test_a_want_far_past_the_plan_is_refused_promptly(npy_dataset, tmp_path: Path) -> None:
    daemon = DaemonProcess([npy_dataset(200)], tmp_path / "state")  # killed below, spinning
    try:
        opened = pb.StreamRequest(open=pb.OpenStream(
            dataset="train", batch_size=10, initial_credits=4, wants=True,
            shard_bytes=4 << 10)).SerializeToString()  # num_epochs=0: forever
        far = pb.StreamRequest(want=pb.Want(epoch=10**9, sequence=0, have=b"\0" * 8))
        code = _raw_stream(daemon.url, [opened, far.SerializeToString()], timeout=8, hold=True)
        busy = _cpu_seconds(daemon.proc.pid, over=3.0)  # the client gave up 1 s ago
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert busy < 1.0, f"the daemon still burns {busy:.1f} CPU s in 3 s"
    finally:
        daemon.stop(signal.SIGKILL)
        daemon.close()


def test_wants_on_a_plain_stream_and_junk_wants_leave_the_daemon_serving(npy_dataset,
                                                                         serve) -> None:
    daemon = serve(npy_dataset(300))
    opened = {"dataset": "train", "batch_size": 10, "num_epochs": 1, "initial_credits": 4,
              "shard_bytes": 4 << 10}
    wanting = pb.StreamRequest(open=pb.OpenStream(**opened, wants=True)).SerializeToString()

    def named(epoch, sequence, have) -> bytes:
        return pb.StreamRequest(want=pb.Want(epoch=epoch, sequence=sequence,
                                             have=have)).SerializeToString()

    cases = [
        [named(0, 0, b"")],  # empty mask
        [named(0, 0, b"\xff" * 64)],  # every row had, and too long
        [named(0, 0, b"\0" * (1 << 20))],  # huge mask
        [named(0, 3, b"\0" * 8), named(0, 3, b"\0" * 8)],  # the same shard twice
        [named(2**31, 2**31, b"\0")],  # past a finite plan
        [pb.StreamRequest(want=pb.Want()).SerializeToString()] * 5000,  # a flood
    ]
    for case in cases:
        code = _raw_stream(daemon.url, [wanting, *case], timeout=15, hold=True)
        assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED,
                        grpc.StatusCode.OUT_OF_RANGE), case[:1]
    with tether.Loader(daemon.url, dataset="train", batch_size=10) as loader:
        _, columns = collect(loader)
    assert sorted(columns["id"]) == list(range(300))


# -- end to end: exactly the same delivery ------------------------------------

ROWS = 1200


def _three_runs(url: str, cache: Path, limit: int | str, **options):
    """Without the cache; with it (filling it); with it again (reading it)."""
    baseline, _ = collect(tether.Loader(url, **options))
    runs = []
    for _ in range(2):
        with tether.Loader(url, cache=cache, cache_limit=limit, **options) as loader:
            batches, _ = collect(loader)
            runs.append((batches, loader.stats()))
    return baseline, runs


CONFIGS = {
    "unshuffled-drop_last": {"shuffle": False, "drop_last": True, "batch_size": 96,
                             "num_epochs": 2},
    "shuffled-process-1-of-2": {"shuffle": True, "seed": 7, "process_index": 1,
                                "process_count": 2, "batch_size": 50, "num_epochs": 3},
    "shuffled-filter": {"shuffle": True, "seed": 2, "filter": "label >= 4",
                        "batch_size": 64, "num_epochs": 2},
}


@pytest.mark.parametrize("limit_rows", [ROWS // 3, 10 * ROWS], ids=["partial", "full"])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_delivery_is_exactly_as_without_the_cache(npy_dataset, serve, tmp_path, config,
                                                  limit_rows) -> None:
    daemon = serve(npy_dataset(ROWS))
    options = {"dataset": "train", "shard_bytes": 8 << 10, **CONFIGS[config]}
    limit = limit_for(limit_rows, ROWS, NPY_ROW_BYTES)
    baseline, runs = _three_runs(daemon.url, tmp_path / "cache", limit, **options)
    for batches, _ in runs:
        assert_same(batches, baseline)
    if limit_rows > ROWS:
        assert runs[1][1]["cache_rows_fetched"] == 0  # the second run never crossed
    assert disk_bytes(tmp_path / "cache") <= limit + (64 << 10)


def test_forever_epochs_with_the_cache_match_without(npy_dataset, serve, tmp_path) -> None:
    daemon = serve(npy_dataset(500))
    options = {"dataset": "train", "batch_size": 64, "shuffle": True, "seed": 9,
               "num_epochs": None, "shard_bytes": 4 << 10}
    take = 500 * 4 // 64  # about four epochs
    with tether.Loader(daemon.url, **options) as loader:
        baseline = list(itertools.islice(loader, take))
    limit = limit_for(200, 500, NPY_ROW_BYTES)  # partial: rows evicted and fetched again
    with tether.Loader(daemon.url, cache=tmp_path / "c", cache_limit=limit, **options) as loader:
        got = list(itertools.islice(loader, take))
    assert_same(got, baseline)


def test_parquet_windowed_shuffle_with_the_cache_matches_without(serve, tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = 2000
    rng = np.random.default_rng(0)
    table = pa.table({"id": np.arange(rows, dtype=np.int64),
                      "v": rng.standard_normal(rows).astype(np.float32)})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=100)
    daemon = serve(tmp_path / "t.parquet")
    options = {"dataset": "t", "batch_size": 50, "shuffle": True, "seed": 4,
               "shuffle_window": 400 * 12, "num_epochs": 3, "shard_bytes": 2 << 10}
    baseline, runs = _three_runs(daemon.url, tmp_path / "cache", 700 * 12 + rows * 4, **options)
    for batches, _ in runs:
        assert_same(batches, baseline)


def test_an_image_folder_with_image_size_matches_without(serve, tmp_path) -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    for index in range(60):
        label = ("cat", "dog")[index % 2]
        (tmp_path / "pets" / label).mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (5 + index % 4, 6 + index % 3, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "pets" / label / f"{index}.png")
    daemon = serve(tmp_path / "pets")
    options = {"dataset": "pets", "batch_size": 8, "shuffle": True, "seed": 3,
               "num_epochs": 3, "image_size": (8, 8), "columns": ["image", "label"],
               "shard_bytes": 1 << 10}
    baseline, runs = _three_runs(daemon.url, tmp_path / "cache", "20MB", **options)
    for batches, _ in runs:
        assert_same(batches, baseline)
    assert runs[1][1]["cache_rows_fetched"] == 0


def test_resume_mid_epoch_onto_a_partial_cache_is_exact(npy_dataset, serve, tmp_path) -> None:
    daemon = serve(npy_dataset(ROWS))
    options = {"dataset": "train", "batch_size": 40, "shuffle": True, "seed": 11,
               "num_epochs": 3, "shard_bytes": 8 << 10}
    baseline, _ = collect(tether.Loader(daemon.url, **options))
    limit = limit_for(ROWS // 2, ROWS, NPY_ROW_BYTES)
    first = tether.Loader(daemon.url, cache=tmp_path / "c", cache_limit=limit, **options)
    it = iter(first)
    head = [next(it) for _ in range(len(baseline) // 2 + 7)]  # into the second epoch
    state = first.state_dict()
    first.close()
    resumed = tether.Loader(daemon.url, cache=tmp_path / "c", cache_limit=limit, **options)
    resumed.load_state_dict(state)
    tail, _ = collect(resumed)
    resumed.close()
    assert_same(head + tail, baseline)


def test_a_rewrite_keeping_size_and_mtime_never_serves_stale_rows(npy_dataset, serve,
                                                                 tmp_path) -> None:
    folder = npy_dataset(300)
    daemon = serve(folder)
    options = {"dataset": "train", "batch_size": 50, "columns": ["id", "label"],
               "shard_bytes": 4 << 10}
    with tether.Loader(daemon.url, cache=tmp_path / "c", **options) as loader:
        collect(loader)
    stat = (folder / "label.npy").stat()
    np.save(folder / "label.npy", (np.load(folder / "label.npy") + 1).astype(np.int32))
    os.utime(folder / "label.npy", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    _, fresh = collect(tether.Loader(daemon.url, **options))
    with tether.Loader(daemon.url, cache=tmp_path / "c", **options) as loader:
        _, cached = collect(loader)
    np.testing.assert_array_equal(cached["label"], fresh["label"])


def test_two_loaders_on_one_cache_directory_the_second_is_refused(npy_dataset, serve,
                                                                   tmp_path) -> None:
    daemon = serve(npy_dataset(300))
    options = {"dataset": "train", "batch_size": 10, "shard_bytes": 4 << 10}
    with tether.Loader(daemon.url, cache=tmp_path / "c", **options) as one:
        it = iter(one)
        next(it)
        with tether.Loader(daemon.url, cache=tmp_path / "c", **options) as two, \
                pytest.raises(CacheError, match="in use"):
            next(iter(two))
        rest = [next(it) for _ in range(29)]
    assert sorted(np.concatenate([b["id"] for b in rest]).tolist()) == list(range(10, 300))


_KILLED_LOADER = """
import sys, tether
loader = tether.Loader(sys.argv[1], dataset="train", batch_size=40, shuffle=True, seed=11,
                       num_epochs=3, shard_bytes=8 << 10, cache=sys.argv[2])
for i, batch in enumerate(loader):
    if i == 50:
        print("mid", flush=True)
        sys.stdin.readline()  # killed here, the cache open and written to
"""


def test_a_loader_killed_mid_write_leaves_a_cache_that_delivers_exactly(npy_dataset, serve,
                                                                         tmp_path) -> None:
    daemon = serve(npy_dataset(ROWS))
    options = {"dataset": "train", "batch_size": 40, "shuffle": True, "seed": 11,
               "num_epochs": 3, "shard_bytes": 8 << 10}
    baseline, _ = collect(tether.Loader(daemon.url, **options))
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_LOADER, daemon.url,
                             str(tmp_path / "c")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "mid"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stdin.close()
    with tether.Loader(daemon.url, cache=tmp_path / "c", **options) as loader:
        batches, _ = collect(loader)
    assert_same(batches, baseline)
