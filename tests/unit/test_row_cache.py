"""The loader's disk cache on its own: slots, least-recently-used eviction,
pins, the limit across directories, and what a crash leaves behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tether.cache.directory import OVERHEAD_BYTES
from tether.cache.row_cache import CacheError, ColumnSpec, RowCache

COLUMNS = [ColumnSpec("x", "<f4", (4,)), ColumnSpec("id", "<i8", ())]
ROW_BYTES = 4 * 4 + 8 + 8 + 8  # the columns, a use stamp and a checksum


def limit_for(rows: int, num_rows: int = 1000) -> int:
    """The cache_limit that holds `rows` rows of a dataset of `num_rows`."""
    return rows * ROW_BYTES + num_rows * 4 + OVERHEAD_BYTES


def rows_of(ids) -> dict[str, np.ndarray]:
    ids = np.asarray(ids, dtype=np.int64)
    return {"x": np.repeat(ids[:, None], 4, axis=1).astype(np.float32), "id": ids}


def open_cache(root: Path, limit_rows: int = 1000, version: str = "v1",
               num_rows: int = 1000) -> RowCache:
    return RowCache(root, limit_for(limit_rows, num_rows), "train",
                    {"dataset": "train", "fingerprint": version}, COLUMNS, num_rows)


def held(cache: RowCache, ids) -> np.ndarray:
    slots = cache.pin(np.asarray(ids))
    cache.unpin(slots)
    return slots >= 0


def test_rows_stored_are_read_back_exactly(tmp_path: Path) -> None:
    cache = open_cache(tmp_path)
    cache.store(np.array([5, 3, 9]), rows_of([5, 3, 9]))
    slots = cache.pin(np.array([9, 4, 5]))
    assert list(slots >= 0) == [True, False, True]
    got = cache.read(slots[slots >= 0])
    np.testing.assert_array_equal(got["id"], [9, 5])
    np.testing.assert_array_equal(got["x"][:, 0], [9.0, 5.0])
    assert cache.figures()["cache_rows_held"] == 3
    cache.close()


def test_a_cleanly_closed_cache_is_found_again(tmp_path: Path) -> None:
    cache = open_cache(tmp_path)
    cache.store(np.arange(10), rows_of(range(10)))
    cache.close()
    again = open_cache(tmp_path)
    assert held(again, range(12)).tolist() == [True] * 10 + [False] * 2
    slots = again.pin(np.arange(10))
    np.testing.assert_array_equal(again.read(slots)["id"], np.arange(10))
    again.close()


def test_a_cache_not_closed_cleanly_is_started_afresh(tmp_path: Path) -> None:
    cache = open_cache(tmp_path)
    cache.store(np.arange(10), rows_of(range(10)))
    cache.close()
    meta = cache.directory / "meta.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "clean": False}))  # a crash
    again = open_cache(tmp_path)
    assert not held(again, range(10)).any()
    again.close()


def test_least_recently_used_rows_go_first_and_pinned_ones_never(tmp_path: Path) -> None:
    cache = open_cache(tmp_path, limit_rows=32)
    assert cache.capacity == 32
    cache.store(np.arange(32), rows_of(range(32)))
    recent = cache.pin(np.arange(16, 32))  # used again, and pinned
    cache.unpin(recent[:8])  # rows 16-23 stay recent; 24-31 stay pinned
    pinned_old = cache.pin(np.arange(0, 2))  # old rows, but pinned
    cache.store(np.arange(100, 104), rows_of(range(100, 104)))
    assert held(cache, range(100, 104)).all()
    assert held(cache, range(0, 2)).all()  # pinned: kept though least recent
    assert held(cache, range(16, 32)).all()  # recently used: kept
    assert held(cache, range(2, 16)).sum() == 14 - 4  # four least recently used gave way
    np.testing.assert_array_equal(cache.read(cache.pin(np.arange(100, 104)))["id"],
                                  np.arange(100, 104))
    cache.unpin(pinned_old)
    cache.close()


def test_a_full_cache_of_pinned_rows_keeps_what_it_can_and_stays_exact(tmp_path) -> None:
    cache = open_cache(tmp_path, limit_rows=8)
    cache.store(np.arange(8), rows_of(range(8)))
    cache.pin(np.arange(8))
    cache.store(np.arange(50, 60), rows_of(range(50, 60)))  # no room: nothing kept
    assert not held(cache, range(50, 60)).any()
    np.testing.assert_array_equal(cache.read(cache.pin(np.arange(8)))["id"], np.arange(8))
    cache.close()


def test_the_limit_holds_across_datasets_and_old_versions_are_deleted(tmp_path: Path) -> None:
    first = open_cache(tmp_path, limit_rows=600, version="v1")
    first.store(np.arange(600), rows_of(range(600)))
    first.close()
    second = RowCache(tmp_path, limit_for(600), "other",
                      {"dataset": "other"}, COLUMNS, 1000)
    second.store(np.arange(500), rows_of(range(500)))
    second.close()
    assert not first.directory.exists()  # least recently used, and in the way
    newer = open_cache(tmp_path, limit_rows=100, version="v2")
    newer.close()
    assert newer.directory != first.directory
    total = sum(f.stat().st_blocks * 512 for f in tmp_path.rglob("*") if f.is_file())
    assert total <= limit_for(600)


def test_a_new_version_replaces_the_old_one(tmp_path: Path) -> None:
    old = open_cache(tmp_path, version="v1")
    old.store(np.arange(10), rows_of(range(10)))
    old.close()
    new = open_cache(tmp_path, version="v2")
    assert not old.directory.exists()
    assert not held(new, range(10)).any()
    new.close()


def test_two_loaders_cannot_share_one_cache_directory(tmp_path: Path) -> None:
    cache = open_cache(tmp_path)
    with pytest.raises(CacheError, match="in use by another loader"):
        open_cache(tmp_path)
    cache.close()
    open_cache(tmp_path).close()  # free again once closed


def test_a_changed_row_pinned_by_another_shard_keeps_its_slot_until_unpinned(tmp_path) -> None:
    """Found by a review: dropping a changed row freed its slot while another
    shard still pinned it (and twice when found twice), so a later store gave
    one slot to two rows and a lookup returned another row's values."""
    cache = open_cache(tmp_path, limit_rows=10)
    cache.store(np.arange(10), rows_of(range(10)))
    first = cache.pin(np.array([2]))  # a shard holds row 2...
    cache._slots["id"][first[0]] = 999  # ...whose bytes then change on disk
    again = cache.pin(np.array([2, 2]))  # found twice by the next lookup
    assert list(again) == [-1, -1] and cache.dropped == 1
    assert first[0] not in cache._free  # still pinned by the first shard
    cache.store(np.arange(10, 20), rows_of(range(10, 20)))  # evictions, new slots
    owners = cache._owner[cache._owner >= 0]
    assert len(set(owners.tolist())) == len(owners)  # no slot holds two rows
    cache.unpin(first)
    assert cache._free.count(first[0]) == 1  # free again, once
    slots = cache.pin(np.arange(20))
    here = slots >= 0
    np.testing.assert_array_equal(cache.read(slots[here])["id"], np.arange(20)[here])
    cache.close()
