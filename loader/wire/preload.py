"""The libraries a first frame needs, imported ahead on a thread of their own.

Imported on the first frame's path, crc32c (about 30-60 ms here) and
pyarrow, whose lz4 and zstd codecs a compressed frame needs (about 0.25 s),
held a fresh daemon's first frame and a fresh loader's first batch by that
much: several round trips of a 40 ms link. A daemon starting, and a loader
being built or opening its stream, wait on the network meanwhile.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import threading

_CHECKSUM_MODULES = ("crc32c",)
_CODEC_MODULES = ("pyarrow",)
FINISH_SECONDS = 10.0  # the longest an exit or a fork waits for an import under way
_started: set[str] = set()
_threads: list[threading.Thread] = []
_lock = threading.Lock()


def preload(codecs: bool = True) -> None:
    """Start importing the checksums' libraries, and the codecs' with `codecs`;
    each module once a process. Returns at once."""
    with _lock:
        modules = tuple(m for m in _CHECKSUM_MODULES + (_CODEC_MODULES if codecs else ())
                        if m not in _started)
        if not modules:
            return
        _started.update(modules)
        # A daemon thread, so that an import that never ends (seen once in CI:
        # a loader that had printed its result and hung at exit, joining this
        # thread) cannot hold the process; _finish gives it time first.
        thread = threading.Thread(target=_import, args=(modules,), name="tether-preload",
                                  daemon=True)
        _threads.append(thread)
    thread.start()


def _finish() -> None:
    """Let imports under way finish, for at most FINISH_SECONDS. Before exit: a
    daemon thread still importing when Python finalizes is parked for good
    holding the import lock, and an exit that needs an import would hang.
    Before a fork: a child forked mid-import (a DataLoader's workers) would
    inherit a module lock held by a thread it does not have."""
    for thread in list(_threads):
        if thread.is_alive():
            thread.join(timeout=FINISH_SECONDS)


atexit.register(_finish)  # (runs before Python parks daemon threads)
if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(before=_finish)


def _import(modules: tuple[str, ...]) -> None:
    for name in modules:
        with contextlib.suppress(ImportError):  # not installed: the peer is told so
            importlib.import_module(name)
