"""Results back home: uploads land in one folder the daemon owns, and nowhere else.

A name is a relative "/"-separated path. Refused: absolute paths, `..`,
empty or dot components, backslashes, `:`, C0 and C1 controls, bidi and
other invisible formatting characters, Windows' reserved names (CON, NUL,
COM1, ...), components over 255 bytes, more than MAX_DEPTH components, and
any existing link or non-folder on the way; an existing file unless
`overwrite`. The folders are walked through directory file descriptors
opened with O_NOFOLLOW, so a link swapped in during a slow upload cannot
redirect it. Bytes go to a temporary file inside the folder and are linked
into place only once complete and of the declared size, so a reader never
sees half a file; a size cap, a free-disk check that counts what uploads in
progress still have to write, and a cap on the number of files and folders
refuse what cannot fit before a byte is written. A refused upload removes
the folders it made.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import secrets
import shutil
import stat
import threading
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tether.wire.errors import RequestError

from ..logsafe import clip, escape, unsafe_char
from ..private import DIR_MODE, FILE_MODE, private_dir

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 10 << 30
DEFAULT_MAX_ENTRIES = 100_000  # files and folders in the results folder
FREE_DISK_MARGIN = 256 << 20  # never fill the disk to the last byte
MAX_NAME_CHARS = 1024
MAX_DEPTH = 32  # components of a name
MAX_COMPONENT_BYTES = 255  # what most file systems take
OVERWRITE_METADATA = "tether-overwrite"  # call metadata: "1" replaces an existing file
_INCOMING = ".incoming"
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$",
                     *(f"{port}{n}" for port in ("COM", "LPT")
                       for n in "123456789\u00b9\u00b2\u00b3")}
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UploadRefused(RequestError):
    """An upload that names a path outside the results folder, or cannot fit."""


@dataclass(frozen=True)
class Stored:
    name: str
    size: int
    sha256: str


def safe_display(name: str) -> str:
    """`name` as a terminal may print it: controls and bidi characters escaped.

    `tether results` lists names that may come from anyone holding the URL,
    or from files put there by other means."""
    return escape(name)


def overwrite_requested(metadata) -> bool:
    """Whether a call's metadata asks to replace an existing file
    (what `upload(..., overwrite=True)` sends)."""
    return any(key == OVERWRITE_METADATA and value in ("1", b"1") for key, value in metadata or ())


def _refuse_name(name: str, why: str) -> UploadRefused:
    return UploadRefused(f"upload name {clip(name, 100)!r} {why}")


def safe_relative(name: str) -> Path:
    """`name` as a path inside the results folder, or UploadRefused."""
    if not name or len(name) > MAX_NAME_CHARS:
        raise UploadRefused(f"an upload needs a name of 1 to {MAX_NAME_CHARS} characters")
    bad = next((ch for ch in name if unsafe_char(ch) or ch in "\\:"), None)
    if bad is not None:
        what = unicodedata.name(bad, f"U+{ord(bad):04X}")
        raise _refuse_name(name, f"holds {what} ({bad.encode('unicode_escape').decode()}); "
                                 "controls, bidi characters, backslashes and ':' are refused")
    if name.startswith("/"):
        raise _refuse_name(name, "is absolute; give a path inside the folder")
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts) or parts[0] == _INCOMING:
        raise _refuse_name(name, "has an empty, '.' or '..' component")
    if len(parts) > MAX_DEPTH:
        raise _refuse_name(name, f"is {len(parts)} folders deep; at most {MAX_DEPTH}")
    for part in parts:
        if len(part.encode()) > MAX_COMPONENT_BYTES:
            raise _refuse_name(name, f"has a component of {len(part.encode())} bytes; "
                                     f"at most {MAX_COMPONENT_BYTES}")
        if part.split(".")[0].rstrip(" ").upper() in _WINDOWS_RESERVED:
            raise _refuse_name(name, f"uses {part.split('.')[0]!r}, a name Windows reserves")
    return Path(*parts)


class ResultsSink:
    def __init__(self, root: Path, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        private_dir(root, tighten=False)  # a folder the user chose keeps its mode
        private_dir(root / _INCOMING)
        self._lock = threading.Lock()
        self._reserved = 0  # bytes that uploads in progress have yet to write
        self._entries: int | None = None  # counted on the first upload

    def _count_entries(self) -> int:
        count = 0
        for folder, dirs, files in os.walk(self.root):  # links are not followed
            if folder == str(self.root):
                dirs[:] = [d for d in dirs if d != _INCOMING]
            count += len(dirs) + len(files)
        return count

    def _reserve(self, size: int) -> None:
        if size > self.max_bytes:
            raise UploadRefused(f"upload of {size} bytes is over the daemon's cap of "
                                f"{self.max_bytes} bytes (tether serve --max-upload)")
        with self._lock:
            if self._entries is None:
                self._entries = self._count_entries()
            if self._entries >= self.max_entries:
                raise UploadRefused(f"the results folder holds {self._entries} files and "
                                    f"folders; the daemon takes at most {self.max_entries}")
            free = shutil.disk_usage(self.root).free
            if size + FREE_DISK_MARGIN + self._reserved > free:
                raise UploadRefused(f"upload of {size} bytes does not fit: {free} bytes free, "
                                    f"{self._reserved} of them promised to uploads in progress")
            self._reserved += size

    def _add_entries(self, count: int) -> None:
        with self._lock:
            self._entries += count

    def _release(self, nbytes: int) -> None:
        with self._lock:
            self._reserved -= nbytes

    def store(self, name: str, size: int, chunks: Iterable[bytes],
              overwrite: bool = False) -> Stored:
        """Write `size` bytes from `chunks` as `name`; all or nothing."""
        relative = safe_relative(name)
        self._reserve(size)
        unwritten = size
        fds: list[int] = []  # the results folder, then each folder down to the target's
        made: list[tuple[int, str]] = []  # folders this upload made: (parent's fd, name)
        incoming = partial = None
        done = False
        try:
            fds.append(os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
            incoming = os.open(_INCOMING, _DIR_FLAGS, dir_fd=fds[0])
            self._descend(name, relative.parts[:-1], fds, made)
            leaf, folder = relative.parts[-1], fds[-1]
            existed = self._check_target(name, leaf, folder, overwrite)
            digest, written = hashlib.sha256(), 0
            temporary = f"{secrets.token_hex(8)}.partial"
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, FILE_MODE, dir_fd=incoming)
            partial = temporary  # ours to remove from here on
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    written += len(chunk)
                    if written > size:
                        raise _refuse_name(name, f"sent more than its {size} bytes")
                    digest.update(chunk)
                    out.write(chunk)
                    self._release(len(chunk))
                    unwritten -= len(chunk)
            if written != size:
                raise _refuse_name(name, f"ended after {written} of {size} bytes")
            self._place(name, partial, incoming, leaf, folder, overwrite)
            partial = None
            self._add_entries(not existed)
            done = True
        except OSError as exc:  # say what failed without the daemon's own paths
            raise UploadRefused(f"cannot store {clip(name, 100)!r}: "
                                f"{exc.strerror or type(exc).__name__}") from None
        finally:
            self._release(unwritten)
            if partial is not None and incoming is not None:
                with contextlib.suppress(OSError):
                    os.unlink(partial, dir_fd=incoming)
            if not done:
                for parent, part in reversed(made):
                    with contextlib.suppress(OSError):  # another upload may use it now
                        os.rmdir(part, dir_fd=parent)
                        self._add_entries(-1)
            for fd in (*fds, *([incoming] if incoming is not None else [])):
                os.close(fd)
        log.info("stored result %s (%d bytes)", clip(str(relative)), size)
        return Stored(str(relative), size, digest.hexdigest())

    def _descend(self, name: str, folders: Sequence[str], fds: list[int],
                 made: list[tuple[int, str]]) -> None:
        """Open each of `folders` below fds[-1] in turn (making those missing,
        never through a link), adding each one's fd to `fds` and each made one to `made`."""
        for part in folders:
            try:
                os.mkdir(part, DIR_MODE, dir_fd=fds[-1])
                made.append((fds[-1], part))
                self._add_entries(1)
            except FileExistsError:
                pass
            try:
                fds.append(os.open(part, _DIR_FLAGS, dir_fd=fds[-1]))
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _refuse_name(name, "needs a folder where a link or a file is") from None
                raise

    @staticmethod
    def _check_target(name: str, leaf: str, folder: int, overwrite: bool) -> bool:
        """Whether the target exists (a file that may be replaced); else UploadRefused."""
        try:
            mode = os.stat(leaf, dir_fd=folder, follow_symlinks=False).st_mode
        except FileNotFoundError:
            return False
        if not stat.S_ISREG(mode):
            raise _refuse_name(name, "exists and is a link or a folder")
        if not overwrite:
            raise _refuse_name(name, "exists; upload with overwrite=True to replace it")
        return True

    @staticmethod
    def _place(name: str, partial: str, incoming: int, leaf: str, folder: int,
               overwrite: bool) -> None:
        """Move the complete file into place: replacing only with `overwrite`.

        A rename through directory descriptors never follows a link: one put
        where the target was is replaced, not written through."""
        if overwrite:
            os.replace(partial, leaf, src_dir_fd=incoming, dst_dir_fd=folder)
            return
        try:  # a hard link fails if the name was taken meanwhile; a rename would not
            os.link(partial, leaf, src_dir_fd=incoming, dst_dir_fd=folder)
        except FileExistsError:
            raise _refuse_name(name, "exists; upload with overwrite=True to replace it") from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            os.replace(partial, leaf, src_dir_fd=incoming, dst_dir_fd=folder)  # no hard links
        else:
            os.unlink(partial, dir_fd=incoming)

    def listing(self) -> Iterator[tuple[str, int, float]]:
        """(name, size, modification time) of every stored result; print names
        with safe_display."""
        for path in sorted(self.root.rglob("*")):
            relative = path.relative_to(self.root)
            if relative.parts[0] != _INCOMING and path.is_file() and not path.is_symlink():
                stat_ = path.stat()
                yield str(relative), stat_.st_size, stat_.st_mtime
