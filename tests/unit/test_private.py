"""The daemon's private files: pruning caches that another thread prunes too."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tether.daemon.private import keep_newest


def _files(folder: Path, count: int) -> list[Path]:
    made = []
    for i in range(count):
        path = folder / f"sql.{i}.arrow"
        path.write_bytes(b"x")
        os.utime(path, (time.time() - count + i,) * 2)  # oldest first
        made.append(path)
    return made


def test_keep_newest_keeps_the_newest_and_removes_the_rest(tmp_path: Path) -> None:
    made = _files(tmp_path, 6)
    keep_newest(made[-1], "sql.*.arrow", 3)
    assert sorted(tmp_path.iterdir()) == made[-3:]


def test_a_file_pruned_by_someone_else_meanwhile_is_no_error(tmp_path: Path) -> None:
    """Seen in CI: two remote queries pruning at once, one removed a result
    between the other's listing and its stat (FileNotFoundError in the daemon).
    A link whose file is gone stands for such a file: listed, not stat-able."""
    made = _files(tmp_path, 5)
    (tmp_path / "sql.gone.arrow").symlink_to(tmp_path / "removed-meanwhile")
    keep_newest(made[-1], "sql.*.arrow", 2)
    assert sorted(tmp_path.iterdir()) == made[-2:]
