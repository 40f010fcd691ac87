"""The libraries a first frame needs, imported ahead on a thread of their own.

Imported on the first frame's path, crc32c (about 30-60 ms here) and
pyarrow, whose lz4 and zstd codecs a compressed frame needs (about 0.25 s),
held a fresh daemon's first frame and a fresh loader's first batch by that
much: several round trips of a 40 ms link. A daemon starting, and a loader
being built or opening its stream, wait on the network meanwhile.
"""

from __future__ import annotations

import contextlib
import importlib
import threading

_CHECKSUM_MODULES = ("crc32c",)
_CODEC_MODULES = ("pyarrow",)
_started: set[tuple[str, ...]] = set()
_lock = threading.Lock()


def preload(codecs: bool = True) -> None:
    """Start importing the checksums' libraries, and the codecs' with `codecs`;
    each set once a process. Returns at once."""
    modules = _CHECKSUM_MODULES + (_CODEC_MODULES if codecs else ())
    with _lock:
        if modules in _started:
            return
        _started.add(modules)
    # Not a daemon thread: one still importing at exit holds the import lock
    # while Python 3.13 parks it for good, and the exit that needs an import hangs.
    threading.Thread(target=_import, args=(modules,), name="tether-preload").start()


def _import(modules: tuple[str, ...]) -> None:
    for name in modules:
        with contextlib.suppress(ImportError):  # not installed: the peer is told so
            importlib.import_module(name)
