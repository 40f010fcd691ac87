"""macOS's or native Windows' Python, as far as tether can tell, simulated on Linux.

No machine here runs either system, so the tests in
tests/e2e/test_simulated_systems.py run tether under this file: a process
started with this folder on PYTHONPATH and TETHER_SIMULATE=macos or
=windows imports it at start (Python's `sitecustomize` hook), and it takes
away what that system's Python lacks.

- macos: `sys.platform` is "darwin" (multiprocessing spawns, as there); no
  os.posix_fallocate, posix_fadvise, sched_getaffinity, pipe2, memfd,
  O_DIRECT/O_PATH/O_TMPFILE, xattrs; no Linux-only socket options; no
  /proc; setrlimit refuses more than OPEN_MAX (10,240) open files, as
  macOS's does.
- windows: no fcntl, resource, pwd, grp or termios; no os.getuid, fork,
  pread/pwrite, posix_fallocate, sysconf, O_NOFOLLOW/O_DIRECTORY/O_CLOEXEC,
  dir_fd; no POSIX-only signals or AF_UNIX; no /proc. msvcrt's file lock is
  put in, backed by flock: the one Windows call that cannot run here.

Kept, though Windows lacks them: os.register_at_fork and os.uname, which
torch and numpy reach only after asking sys.platform (still "linux" here,
as the standard library's own POSIX code needs it).

Not simulated, and so not tested: the file systems' own behaviour (a
case-insensitive APFS; Windows refusing to delete an open file), the C
libraries underneath (grpc's, numpy's), and Windows paths (C:\\...).
"""

from __future__ import annotations

import builtins
import errno
import fcntl as _fcntl
import functools
import io
import os
import signal
import socket
import sys
import types

_LINUX_ONLY_OS = (
    "posix_fallocate", "posix_fadvise", "sched_getaffinity", "sched_setaffinity", "pipe2",
    "memfd_create", "eventfd", "splice", "copy_file_range", "pidfd_open", "getrandom",
    "getxattr", "setxattr", "listxattr", "removexattr", "O_DIRECT", "O_PATH", "O_TMPFILE",
    "O_NOATIME", "O_LARGEFILE")
_LINUX_ONLY_SOCKET = (
    "SO_BINDTODEVICE", "SO_PEERCRED", "SO_PASSCRED", "SO_MARK", "SO_PRIORITY",
    "TCP_USER_TIMEOUT", "TCP_QUICKACK", "TCP_CORK", "TCP_CONGESTION", "AF_PACKET",
    "AF_NETLINK", "SOCK_CLOEXEC", "SOCK_NONBLOCK")
_POSIX_ONLY_MODULES = ("fcntl", "resource", "pwd", "grp", "termios", "tty", "pty")
_POSIX_ONLY_OS = (
    "getuid", "geteuid", "getgid", "getegid", "getgroups", "getpgid", "setsid", "setpgid",
    "killpg", "fork", "forkpty", "pread", "pwrite", "preadv", "pwritev",
    "sysconf", "fpathconf", "pathconf", "statvfs", "fstatvfs", "fchown", "chown", "lchown",
    "mkfifo", "mknod", "getloadavg", "nice", "sync", "openpty", "ctermid",
    "O_NOFOLLOW", "O_DIRECTORY", "O_CLOEXEC", "O_NOCTTY", "O_SYNC", "O_DSYNC", "O_NDELAY",
    "O_ASYNC", *_LINUX_ONLY_OS)
_POSIX_ONLY_SIGNALS = ("SIGKILL", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGQUIT",
                       "SIGPIPE", "SIGCHLD", "SIGSTOP", "SIGCONT", "alarm", "setitimer",
                       "pthread_kill", "siginterrupt")
OPEN_MAX = 10_240


def _remove(module: types.ModuleType, names) -> None:
    for name in names:
        if hasattr(module, name):
            delattr(module, name)


def _hide_proc() -> None:
    """Every way tether opens or lists a path finds no /proc."""
    def hidden(call):
        @functools.wraps(call)
        def wrapper(path=".", *args, **kwargs):
            if isinstance(path, (str, bytes, os.PathLike)):
                text = os.fsdecode(os.fspath(path))
                if text == "/proc" or text.startswith("/proc/"):
                    raise FileNotFoundError(errno.ENOENT, "No such file or directory", text)
            return call(path, *args, **kwargs)
        return wrapper

    for name in ("open", "stat", "lstat", "listdir", "scandir"):
        original = getattr(os, name)
        setattr(os, name, hidden(original))
        for supports in (os.supports_dir_fd, os.supports_fd, os.supports_follow_symlinks):
            if original in supports:  # (tether.daemon.posix asks by identity)
                supports.add(getattr(os, name))
    builtins.open = io.open = hidden(io.open)


def _macos() -> None:
    import sysconfig
    import urllib.request  # noqa: F401 (at import on macOS it reads the system's proxies)

    sysconfig.get_config_vars()  # (read under Linux's name: its file is named for it)
    sys.platform = "darwin"
    _remove(os, _LINUX_ONLY_OS)
    import tempfile

    tempfile._O_TMPFILE_WORKS = False  # (decided at its import, by hasattr(os, "O_TMPFILE"))
    _remove(socket, _LINUX_ONLY_SOCKET)
    import resource

    setrlimit = resource.setrlimit

    def macos_setrlimit(which, limits):
        if which == resource.RLIMIT_NOFILE and limits[0] > OPEN_MAX:
            raise ValueError("current limit exceeds maximum limit")  # macOS' words
        setrlimit(which, limits)

    resource.setrlimit = macos_setrlimit


def _msvcrt() -> types.ModuleType:
    module = types.ModuleType("msvcrt")
    module.LK_UNLCK, module.LK_LOCK, module.LK_NBLCK, module.LK_RLCK, module.LK_NBRLCK = range(5)

    def locking(fd: int, mode: int, nbytes: int) -> None:
        if mode == module.LK_UNLCK:
            _fcntl.flock(fd, _fcntl.LOCK_UN)
            return
        waits = mode in (module.LK_LOCK, module.LK_RLCK)
        try:
            _fcntl.flock(fd, _fcntl.LOCK_EX | (0 if waits else _fcntl.LOCK_NB))
        except BlockingIOError:
            raise OSError(errno.EDEADLK, "Resource deadlock avoided") from None  # Windows'

    module.locking = locking
    return module


def _windows() -> None:
    # Imported first: at import these choose their Windows code if msvcrt imports,
    # or call what Windows has by other means (shutil.disk_usage: statvfs; on
    # Windows asyncio imports no unix_events, which asks os.sysconf on 3.13).
    import asyncio  # noqa: F401
    import getpass  # noqa: F401
    import shutil
    import subprocess  # noqa: F401

    statvfs = os.statvfs

    def disk_usage(path):  # (Windows' comes from nt._getdiskusage)
        st = statvfs(path)
        return shutil._ntuple_diskusage(st.f_blocks * st.f_frsize,
                                        (st.f_blocks - st.f_bfree) * st.f_frsize,
                                        st.f_bavail * st.f_frsize)

    shutil.disk_usage = disk_usage

    for name in _POSIX_ONLY_MODULES:
        sys.modules[name] = None  # `import fcntl`: ModuleNotFoundError
    sys.modules["msvcrt"] = _msvcrt()
    _remove(os, _POSIX_ONLY_OS)
    os.supports_dir_fd = set()
    os.supports_follow_symlinks = {os.stat}
    _remove(signal, _POSIX_ONLY_SIGNALS)
    _remove(socket, ("AF_UNIX", *_LINUX_ONLY_SOCKET))


_SYSTEMS = {"macos": _macos, "windows": _windows}
SIMULATED = os.environ.get("TETHER_SIMULATE", "")
if SIMULATED:
    _SYSTEMS[SIMULATED]()
    _hide_proc()
