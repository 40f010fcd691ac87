"""tether.wire.portable's fallbacks, run on Linux by taking Linux's calls away:
space reserved without posix_fallocate (macOS, Windows), a full disk still a
clear error, locks that exclude, files owned where there are no user ids."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

from tether.cache.directory import CacheDirectory, CacheError
from tether.wire.portable import owned_by_me, reserve_space, try_lock


@pytest.fixture
def no_fallocate(monkeypatch):
    monkeypatch.delattr(os, "posix_fallocate")


def test_without_posix_fallocate_every_block_is_allocated_and_the_header_kept(
        tmp_path: Path, no_fallocate) -> None:
    directory = CacheDirectory(tmp_path / "cache", "rows")
    array = directory.reserve("x.npy", np.float32, (1000, 256))  # 1 MB, sparse when made
    header = array.offset
    array[-1] = 7.0
    array.flush()
    info = os.stat(tmp_path / "cache" / "rows" / "x.npy")
    assert info.st_blocks * 512 >= info.st_size  # no hole left for a SIGBUS to fall into
    reopened = directory.open("x.npy", np.float32, (1000, 256))
    assert reopened.offset == header and reopened[-1].tolist() == [7.0] * 256
    assert not reopened[:-1].any()
    directory.close()


def test_without_posix_fallocate_a_full_disk_is_a_clear_error_and_no_file(
        tmp_path: Path, no_fallocate, monkeypatch) -> None:
    directory = CacheDirectory(tmp_path / "cache", "rows")
    write = os.write
    calls = []

    def full_after_three(fd: int, data) -> int:  # what cannot run here: a disk filling up
        calls.append(fd)
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write(fd, data)

    monkeypatch.setattr(os, "write", full_after_three)
    with pytest.raises(CacheError, match="no room for the cache"):
        directory.reserve("x.npy", np.float32, (1000, 4096))  # 16 MB: 16 writes of 1 MiB
    monkeypatch.undo()
    assert not (tmp_path / "cache" / "rows" / "x.npy").exists()
    directory.close()


def test_reserving_nothing_or_a_range_inside_one_block(tmp_path: Path, no_fallocate) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"head")
    os.truncate(path, 10_000)
    fd = os.open(path, os.O_RDWR)
    try:
        reserve_space(fd, 5000, 5000)
        reserve_space(fd, 4, 100)
    finally:
        os.close(fd)
    assert path.read_bytes()[:4] == b"head" and not any(path.read_bytes()[4:])


def test_a_lock_excludes_a_second_holder_until_it_is_closed(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    first = os.open(path, os.O_RDWR | os.O_CREAT)
    second = os.open(path, os.O_RDWR)
    try:
        assert try_lock(first)
        assert not try_lock(second)
        os.close(first)
        assert try_lock(second)
    finally:
        os.close(second)


def test_without_user_ids_every_file_is_owned(tmp_path: Path, monkeypatch) -> None:
    info = os.stat(tmp_path)
    assert owned_by_me(info)
    monkeypatch.setattr(os, "getuid", lambda: info.st_uid + 1)
    assert not owned_by_me(info)
    monkeypatch.delattr(os, "getuid")
    assert owned_by_me(info)
