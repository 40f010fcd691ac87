"""`tether.sync(local, remote)`: a background thread that keeps a folder's copy at
home, and `tether.restore(remote, local)` to bring it back (docs/results.md).

Every `every` seconds the thread looks at each entry at the top of `local`:
a file, or a folder (an Orbax step: written as `<step>.orbax-checkpoint-tmp-*`,
then renamed once final). An entry is sent once it has stopped changing
(the same names, sizes and modification times as at the previous look) and
only if it changed since it was sent: a file as a file, a folder as a folder
upload that appears at home by one rename, so home never holds half a step.
Temporary entries (Orbax's `*.orbax-checkpoint-tmp-*`, names ending in
`.tmp` or `.partial`, hidden ones) are never sent. Uploads resume after a
broken connection, and `max_rate` caps the bytes per second so that a
checkpoint never starves the training stream on the same link.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .client import Client, connect
from .retry import RetryPolicy
from .transfers import PARTIAL
from .wire.errors import RequestError
from .wire.sizes import parse_size

log = logging.getLogger(__name__)
LINK_SHARE = 0.25  # of the measured link, the default max_rate: the stream keeps the rest
ORBAX_TEMPORARY = ".orbax-checkpoint-tmp-"  # a step Orbax has not finished writing
TEMPORARY_SUFFIXES = (".tmp", ".partial")
MIN_RATE = 1e6  # bytes a second: the default cap never starves the sync itself
EXIT_RETRY_S = 10.0
Signature = tuple[tuple[str, int, int], ...]  # (relative name, size, mtime_ns) of its files


class Throttle:
    """A token bucket: `take(n)` sleeps so that at most `rate` bytes a second pass
    on average (one second's worth may go at once)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.rate, self._clock, self._sleep = rate, clock, sleep
        self._tokens, self._last = rate, clock()

    def take(self, nbytes: int) -> None:
        now = self._clock()
        self._tokens = min(self.rate, self._tokens + (now - self._last) * self.rate) - nbytes
        self._last = now
        if self._tokens < 0:
            self._sleep(-self._tokens / self.rate)


class Sync:
    """The handle `tether.sync` returns: `.flush()`, `.stop()`, `.status()`; a
    context manager; flushed at interpreter exit."""

    def __init__(self, local: str | os.PathLike, remote: str, every: float = 60.0,
                 max_rate: int | str | None = None, client: Client | None = None) -> None:
        self.local, self.remote = Path(local), remote.strip("/")
        if every <= 0:
            raise ValueError(f"every must be a positive number of seconds, got {every!r}")
        self.every = every
        self._client = client or connect()
        rate = parse_size(max_rate) if isinstance(max_rate, str) else max_rate
        self._fixed_rate = None if rate is None else float(rate)
        self._rate = self._fixed_rate  # None: no cap (no loader has measured the link)
        # stop() ends its waits: the last flush goes at full speed
        self._stopping = threading.Event()
        self._throttle = Throttle(self._fixed_rate or 1.0, sleep=self._stopping.wait)
        self._client.transfers.throttle = self._take
        self._seen: dict[str, Signature] = {}  # at the previous look
        self._sent: dict[str, Signature] = {}  # as sent home
        self._lock = threading.Lock()  # one round at a time
        self._refused: dict[str, Signature] = {}  # refused by the daemon, until changed
        self._figures: dict[str, Any] = {"files_sent": 0, "bytes_sent": 0, "rounds": 0,
                                         "last_error": "", "refused": []}
        self._thread = threading.Thread(target=self._run, name="tether-sync", daemon=True)
        self._thread.start()
        _LIVE.add(self)

    def _run(self) -> None:
        while not self._stopping.wait(self.every):
            self._round()

    def _take(self, nbytes: int) -> None:
        if self._rate is not None:
            self._throttle.rate = self._rate
            self._throttle.take(nbytes)

    def _round(self, settled: float = 0.0) -> int:
        """Send what is ready; how many entries were sent. With `settled`, an
        entry counts as stopped changing if it did not change in that many seconds."""
        with self._lock:
            self._rate = self._fixed_rate or link_share()
            sent = 0
            try:
                for name, signature in self._ready(settled):
                    sent += self._send_one(name, signature)
                self._figures["rounds"] += 1
                self._figures["last_error"] = ""
            except Exception as exc:  # kept for status(); the next round tries again
                self._figures["last_error"] = f"{type(exc).__name__}: {exc}"
            return sent

    def _send_one(self, name: str, signature: Signature) -> int:
        """Send one entry; one the daemon refuses (a name it takes no upload
        under, a link inside) is said once and skipped until it changes, so it
        never holds back the entries after it."""
        try:
            self._send(name, signature)
            return 1
        except (RequestError, ValueError) as exc:
            if self._refused.get(name) != signature:
                log.warning("tether.sync: %s is not sent home: %s", self.local / name, exc)
            self._refused[name] = signature
            self._figures["refused"] = sorted(self._refused)
            return 0

    def _ready(self, settled: float) -> list[tuple[str, Signature]]:
        now = self._look()
        if settled:
            time.sleep(settled)
            self._seen, now = now, self._look()
        ready = [(name, sig) for name, sig in now.items()  # (an empty folder: nothing yet)
                 if sig and self._seen.get(name) == sig and self._sent.get(name) != sig
                 and self._refused.get(name) != sig]
        self._seen = now
        return ready

    def _look(self) -> dict[str, Signature]:
        found = {}
        for entry in sorted(self.local.iterdir()) if self.local.is_dir() else ():
            if _temporary(entry.name) or entry.is_symlink():
                continue
            found[entry.name] = _signature(entry)
        return found

    def _send(self, name: str, signature: Signature) -> None:
        before = self._client.transfers.sent
        self._client.upload(f"{self.remote}/{name}", self.local / name, progress=False,
                            overwrite=True)
        self._sent[name] = signature
        self._figures["files_sent"] += len(signature)
        sent = self._client.transfers.sent - before
        self._figures["bytes_sent"] += sent
        _TOTAL["bytes"] += sent

    def flush(self, settled: float = 0.5) -> None:
        """Send now whatever has not changed for `settled` seconds and differs from
        home; returns once home holds it (raises what the round met, if anything)."""
        self._round(settled)
        if self._figures["last_error"]:
            raise RuntimeError(f"tether.sync: {self._figures['last_error']}")

    def status(self) -> dict[str, Any]:
        """Files and bytes sent so far, rounds run, the last round's error ("" none),
        and the entries waiting to settle or to be sent."""
        waiting = sorted(n for n, sig in self._seen.items() if self._sent.get(n) != sig)
        return {**self._figures, "waiting": waiting, "max_rate": self._rate}

    def stop(self, flush: bool = True) -> None:
        """Stop the thread, after a last flush unless `flush=False`."""
        self._stopping.set()
        self._thread.join()
        try:
            if flush:
                self.flush()
        finally:
            _LIVE.discard(self)

    def __enter__(self) -> Sync:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop(flush=exc[0] is None)


def link_share() -> float | None:
    """The default max_rate: LINK_SHARE of the fastest rate a live Loader of this
    process receives on the wire (its link, when it waits on the network);
    None, no cap, when no loader has measured one."""
    loaders = sys.modules.get("tether.loader")
    if loaders is None:
        return None
    rates = [loader.stats().get("wire_mb_per_s", 0.0) for loader in list(loaders._LIVE)
             if not loader.closed]
    fastest = max(rates, default=0.0)  # (an average since the loader began: a floor below)
    return max(MIN_RATE, fastest * 1e6 * LINK_SHARE) if fastest > 0 else None


def _temporary(name: str) -> bool:
    return name.startswith(".") or ORBAX_TEMPORARY in name or PARTIAL in name or \
        name.endswith(TEMPORARY_SUFFIXES)


def _signature(entry: Path) -> Signature:
    if entry.is_file():
        info = entry.stat()
        return (("", info.st_size, info.st_mtime_ns),)
    files = []
    for path in sorted(entry.rglob("*")):
        if path.is_file() and not path.is_symlink():
            info = path.stat()
            files.append((path.relative_to(entry).as_posix(), info.st_size, info.st_mtime_ns))
    return tuple(files)


def sync(local: str | os.PathLike, remote: str, every: float = 60.0,
         max_rate: int | str | None = None, url: str | None = None) -> Sync:
    """Keep `local` (a checkpoint folder) copied home under `remote`, from a
    background thread: each entry once it stopped changing, folders whole.

    >>> with tether.sync("/content/ckpt", "run-7/ckpt", every=60, max_rate="5MB"):  # doctest: +SKIP
    ...     train()
    """
    return Sync(local, remote, every, max_rate, connect(url) if url is not None else None)


def restore(remote: str, local: str | os.PathLike, url: str | None = None) -> Path:
    """Bring the copy `sync` kept under `remote` to `local` (the first cell of a
    new runtime): every complete file and step folder, checked by SHA-256."""
    with connect(url) as client:
        return client.download(remote, local)


_LIVE: weakref.WeakSet[Sync] = weakref.WeakSet()
_TOTAL = {"bytes": 0}  # sent by every sync of this process (Loader.stats())


def bytes_synced() -> int:
    """Bytes every `tether.sync` of this process has sent home so far."""
    return _TOTAL["bytes"]


@atexit.register
def _flush_at_exit() -> None:
    """A script that ends (or a kernel that stops) sends what is ready first."""
    for handle in list(_LIVE):
        # at most EXIT_RETRY_S of retries: a daemon gone must not hold the exit for minutes
        handle._client.transfers.retry = RetryPolicy(timeout=EXIT_RETRY_S,
                                                     connect_timeout=EXIT_RETRY_S)
        try:
            handle.stop()
        except Exception as exc:  # say it, and let the interpreter end
            log.warning("tether.sync of %s: the last flush failed: %s", handle.local, exc)
