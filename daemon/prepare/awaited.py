"""Datasets whose snapshot another process is writing: `tether.serve(train=ddf)`.

A Dask collection is computed where its client is, in the process that
called `tether.serve` (tether.daemon.dask_objects), while the daemon is
already serving the rest. The daemon is started knowing the path the
snapshot will have (`--awaiting NAME=PATH`, a hidden flag) and lists NAME as
preparing, like a transform, until PATH appears (moved there whole) or
PATH.error says why it never will.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from ..sources import Found, Source, discover
from .transforms import Preparing

POLL_SECONDS = 0.1

_watchers: dict[Path, threading.Event] = {}  # set once the path or its error is there
_watchers_lock = threading.Lock()


def error_path(path: Path) -> Path:
    """Where the writer says why `path` was not made."""
    return path.with_name(path.name + ".error")


@dataclass(frozen=True)
class AwaitedReader:
    """`Found.reader` of an awaited snapshot: Preparing until it is written."""

    path: Path

    @property
    def format(self) -> str:
        return "arrow+dask" if self.path.suffix == ".arrow" else "npy+dask"

    def __call__(self, name: str, paths: list[Path], cache_dir: Path) -> Source:
        failed = error_path(self.path)
        if not self.path.exists() and failed.exists():
            raise ValueError(failed.read_text(errors="replace").strip())
        if not self.path.exists():
            raise Preparing(f"preparing: computing {name} on Dask in the process that called "
                            "tether.serve", _watch(self.path))
        [found] = discover(self.path)
        return found.open(cache_dir)


def _watch(path: Path) -> threading.Event:
    """An event set when `path` (or its error) exists; one polling thread a path."""
    with _watchers_lock:
        done = _watchers.get(path)
        if done is None:
            done = _watchers[path] = threading.Event()
            threading.Thread(target=_poll, args=(path, done), daemon=True,
                             name=f"tether-awaiting-{path.name}").start()
    return done


def _poll(path: Path, done: threading.Event) -> None:
    while not (path.exists() or error_path(path).exists()):
        done.wait(POLL_SECONDS)  # (never set by anyone else: a sleep)
    done.set()


def awaited(name: str, path: Path) -> Found:
    return Found(name, [], reader=AwaitedReader(path),  # type: ignore[arg-type]
                 origin=f"tether.serve({name}=<Dask collection>)")
