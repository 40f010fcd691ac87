"""Folders and files that only the daemon's own user can read.

What the daemon writes is often a copy of a private file (a CSV converted to
Arrow, an unpacked .npz) or someone's results, so it must not be readable by
the machine's other users whatever the umask: folders 0700, files 0600.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path, tighten: bool = True) -> Path:
    """Make `path` and its missing parents 0700; with `tighten`, an existing
    `path` open to others is made 0700 too (a cache an older version left)."""
    missing = []
    current = Path(path)
    while not os.path.lexists(current) and current.parent != current:
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another thread made it meanwhile
            os.mkdir(folder, DIR_MODE)
    if tighten or missing:
        make_private(path)
    return path


def make_private(path: Path) -> None:
    """Take away the group's and others' access to an existing file or folder."""
    mode = os.stat(path).st_mode
    if stat.S_IMODE(mode) & 0o077:
        os.chmod(path, stat.S_IMODE(mode) & 0o700)


def create_private(path: Path) -> int:
    """A file descriptor open for writing on `path`, emptied, mode 0600; never through a link."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # an existing file keeps its mode through O_CREAT
    return fd


def keep_newest(newest: Path, pattern: str, keep: int) -> None:
    """Remove all but the `keep` most recent files matching `pattern` beside
    `newest` (which always stays): caches a remote side can grow, one file per
    distinct request. A reader with a removed file open keeps reading it."""
    dated = []
    for path in newest.parent.glob(pattern):
        try:  # another thread pruning the same folder may have removed it since
            dated.append((path.stat().st_mtime, path))
        except FileNotFoundError:
            path.unlink(missing_ok=True)  # (a link to a removed file: listed, not stat-able)
    others = [path for _, path in sorted(dated, reverse=True) if path != newest]
    for old in others[keep - 1:]:
        old.unlink(missing_ok=True)
