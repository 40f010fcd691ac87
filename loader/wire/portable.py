"""The file-system calls that Linux, macOS and Windows spell differently, each
chosen by what this system has rather than by its name.

Both sides use them: the loader's disk cache (which runs on all three) and
the daemon's identity lock (Linux and macOS; docs/install.md).
"""

from __future__ import annotations

import errno
import os
import stat

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

try:
    import msvcrt
except ImportError:  # everything but Windows
    msvcrt = None  # type: ignore[assignment]

_JUNCTION = 0xA0000003  # IO_REPARSE_TAG_MOUNT_POINT (stat has it on Windows only)
_CHUNK = 1 << 20  # zeros written at once where there is no posix_fallocate
# What msvcrt.locking raises when another handle holds the lock.
_HELD = {errno.EACCES, errno.EDEADLK, getattr(errno, "EDEADLOCK", errno.EDEADLK)}


def try_lock(fd: int) -> bool:
    """Take an exclusive lock on open file `fd` without waiting: False when
    another holder has it. The system drops it when the file is closed or
    the process dies, even by kill -9. Any other failure (a file system
    without locks) is raised: it is not "in use"."""
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            os.lseek(fd, 0, os.SEEK_SET)  # (msvcrt locks bytes from the position)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError as exc:  # BlockingIOError (flock), or EACCES/EDEADLOCK (msvcrt)
        if isinstance(exc, BlockingIOError) or exc.errno in _HELD:
            return False
        raise
    return True


def reserve_space(fd: int, start: int, end: int) -> None:
    """Allocate bytes [start, end) of open file `fd` now, so that a full disk
    is an OSError here rather than a SIGBUS when a memory-mapped page is
    first written. The bytes must read as zeros (a file just extended by
    truncate): where the system has no posix_fallocate (macOS, Windows),
    zeros are written over them, which allocates every block."""
    if end <= start:
        return
    if hasattr(os, "posix_fallocate"):
        os.posix_fallocate(fd, start, end - start)
        return
    zeros = bytes(min(_CHUNK, end - start))
    os.lseek(fd, start, os.SEEK_SET)
    while start < end:
        start += os.write(fd, zeros[:end - start])


def owned_by_me(info: os.stat_result) -> bool:
    """Whether a file's owner is this process's user; on a system without
    numeric owners (Windows, where a user's folders are closed to others by
    their access lists) every file counts as owned."""
    getuid = getattr(os, "getuid", None)
    return getuid is None or info.st_uid == getuid()


def is_real_dir(info: os.stat_result) -> bool:
    """An lstat result that is a folder, not a link to one (lstat reports a
    link as a link) nor a Windows junction (a folder whose reparse tag is a
    mount point). Other reparse points, such as OneDrive's folders, count."""
    return stat.S_ISDIR(info.st_mode) and \
        getattr(info, "st_reparse_tag", 0) != _JUNCTION


__all__ = ["is_real_dir", "owned_by_me", "reserve_space", "try_lock"]
