"""Files the GPU side may bring back: the results folder, and folders the owner
shares read-only (`tether serve ./data --share models=./pretrained`).

A name is checked as an upload's is (results.safe_relative): relative, no
`..`, no controls. Its first component names a share, else the results
folder. Folders are walked through directory descriptors opened with
O_NOFOLLOW and the file opened with O_NOFOLLOW, so no link, planted or
swapped in, leads outside; listings skip links. A file's SHA-256, which a
download sends first so the client can check what it wrote, is computed
once per version (device, inode, size, modification time).
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

from tether.wire.checksums import sha256_of
from tether.wire.errors import DatasetNotFound, RequestError
from tether.wire.names import folded
from tether.wire.v1 import tether_pb2 as pb

from ..logsafe import clip
from .results import DIR_FLAGS, INCOMING, case_twin, safe_relative

MAX_LISTED = 100_000  # entries a listing returns at most
MAX_LISTING_BYTES = 32 << 20  # and of names: a reply stays under gRPC's message cap
_HASHES_KEPT = 4096


class SharedFiles:
    def __init__(self, results: Path, shares: Mapping[str, Path] | None = None,
                 state_dir: Path | None = None) -> None:
        self.results = results
        self.shares = {name: Path(folder).resolve() for name, folder in (shares or {}).items()}
        private = [results.resolve(), *([state_dir.resolve()] if state_dir else [])]
        for name, folder in self.shares.items():
            _check_share(name, folder, private)
        # Share names are matched as spelled, and none may pass for another by case.
        self._folded = {folded(name): name for name in self.shares}
        if len(self._folded) != len(self.shares):
            raise ValueError(f"--share names {sorted(self.shares)} differ only in case; "
                             "give each share a name of its own")
        self._hashes: dict[tuple[int, ...], str] = {}
        self._hashing: dict[tuple[int, ...], threading.Lock] = {}  # one hasher a version
        self._lock = threading.Lock()

    def check_not_shared(self, name: str) -> None:
        """Refuse an upload under a share's name: downloads of that name would find
        the share, never the upload (shares are read-only)."""
        first = name.split("/", 1)[0]
        share = self._folded.get(folded(first))
        if share is not None:  # (by case too: on macOS "Models/x" and "models/x" are one)
            raise RequestError(f"upload name {clip(name, 100)!r} starts with {first!r}, the "
                               f"name of a folder this daemon shares read-only ({share!r}): "
                               "choose another")

    def _root(self, parts: tuple[str, ...]) -> tuple[Path, tuple[str, ...], str]:
        """The folder a name is under, the rest of the name, and the name's prefix."""
        share = self._folded.get(folded(parts[0]))
        if share is not None and share != parts[0]:
            raise DatasetNotFound(f"no file {clip('/'.join(parts), 100)!r}: the share is "
                                  f"named {share!r}, spelled exactly")
        if parts[0] in self.shares:
            return self.shares[parts[0]], parts[1:], parts[0] + "/"
        return self.results, parts, ""

    def listing(self, prefix: str = "") -> tuple[list[pb.FileEntry], bool]:
        """Files whose names start with `prefix`, sorted; and whether more were left out."""
        found: list[pb.FileEntry] = []
        roots = [(self.results, "")] + [(root, f"{n}/") for n, root in sorted(self.shares.items())]
        names_bytes = 0
        for root, shown in roots:
            for name, info in _walk(root, root == self.results):
                full = shown + name
                if full.startswith(prefix):
                    found.append(pb.FileEntry(name=full, size=info.st_size,
                                              modified=info.st_mtime))
                    names_bytes += len(full) + 32
                    if len(found) > MAX_LISTED or names_bytes > MAX_LISTING_BYTES:
                        return sorted(found[:-1], key=lambda e: e.name), True
        return sorted(found, key=lambda e: e.name), False

    def open(self, name: str) -> tuple[BinaryIO, pb.FileEntry]:
        """The file `name`, opened for reading, and what it is (with its sha256)."""
        parts = safe_relative(name).parts
        root, rest, _ = self._root(parts)
        if not rest:
            raise RequestError(f"{clip(name, 100)!r} is a share, not a file: download a file "
                               "or folder in it")
        fd = _open_below(root, rest, name)
        handle = os.fdopen(fd, "rb")
        info = os.fstat(fd)
        entry = pb.FileEntry(name="/".join(parts), size=info.st_size, modified=info.st_mtime,
                             sha256=self._sha256(handle, info))
        return handle, entry

    def _sha256(self, handle: BinaryIO, info: os.stat_result) -> str:
        """Hashed once per version, however many downloads ask at once."""
        key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        with self._lock:
            hashing = self._hashing.setdefault(key, threading.Lock())
        with hashing:
            with self._lock:
                known = self._hashes.get(key)
            if known is None:
                known = sha256_of(handle)
                with self._lock:
                    if len(self._hashes) >= _HASHES_KEPT:
                        self._hashes.clear()
                    self._hashes[key] = known
        with self._lock:
            self._hashing.pop(key, None)
        handle.seek(0)
        return known


def _check_share(name: str, folder: Path, private: list[Path]) -> None:
    """A share may neither hold nor sit inside the daemon's own folders (its TLS
    key, its token, the results and unfinished uploads), the default state
    folder included."""
    from .server import default_state_dir

    for inside in (*private, default_state_dir().resolve()):
        if overlaps(folder, inside):
            raise ValueError(f"--share {name}={folder}: it overlaps {inside}, which holds the "
                             "daemon's key, token or uploads; share a folder beside it")


def overlaps(one: Path, other: Path) -> bool:
    """Whether either folder is, or holds, the other. Compared by spelling and by
    (device, inode): on a case-insensitive disk (macOS's, Windows') resolve()
    keeps a path's case, so ~/STATE and ~/state are two spellings of one folder."""
    if one == other or one in other.parents or other in one.parents:
        return True
    mine, theirs = _identities(one), _identities(other)
    return _holds(mine, theirs) or _holds(theirs, mine)


def _holds(outer: list[tuple[int, int] | None], inner: list[tuple[int, int] | None]) -> bool:
    return outer[0] is not None and outer[0] in inner


def _identities(path: Path) -> list[tuple[int, int] | None]:
    """(device, inode) of `path` (None if it does not exist), then of each folder above."""
    found: list[tuple[int, int] | None] = []
    for folder in (path, *path.parents):
        try:
            info = os.stat(folder)
        except OSError:
            found.append(None)
            continue
        found.append((info.st_dev, info.st_ino))
    return found


def _open_below(root: Path, parts: tuple[str, ...], name: str) -> int:
    """A descriptor of the regular file `parts` below `root`, never through a link."""
    fds = [os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]
    try:
        for part in parts[:-1]:
            _refuse_twin(name, part, fds[-1])
            fds.append(os.open(part, DIR_FLAGS, dir_fd=fds[-1]))
        _refuse_twin(name, parts[-1], fds[-1])
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                     dir_fd=fds[-1])
    except OSError as exc:
        raise DatasetNotFound(f"no file {clip(name, 100)!r} to download (links are not "
                              f"followed): {exc.strerror}") from None
    finally:
        for folder in fds:
            os.close(folder)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise DatasetNotFound(f"{clip(name, 100)!r} is a folder or not a plain file: "
                              "download a folder with client.download(), which lists it")
    return fd


def _refuse_twin(name: str, part: str, folder: int) -> None:
    """A case-insensitive disk (a Mac's) would open `part` spelled otherwise:
    that is another name's file, not this one."""
    twin = case_twin(folder, part)
    if twin is not None:
        raise DatasetNotFound(f"no file {clip(name, 100)!r}: there is {twin!r}, spelled "
                              "otherwise; names are matched exactly")


def _walk(root: Path, is_results: bool) -> Iterator[tuple[str, os.stat_result]]:
    """(relative name, stat) of the plain files below `root`; links skipped."""
    for folder, dirs, files in os.walk(root):  # links to folders are not followed
        if is_results and Path(folder) == root:
            dirs[:] = [d for d in dirs if d != INCOMING]
        for file in files:
            path = Path(folder, file)
            info = path.lstat()
            if stat.S_ISREG(info.st_mode):
                yield str(path.relative_to(root)).replace(os.sep, "/"), info
