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
import time
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tether.wire.checksums import sha256_of
from tether.wire.errors import Busy, DataCorrupted, RequestError
from tether.wire.names import folded, twins, windows_reserved
from tether.wire.portable import try_lock

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
INCOMING = ".incoming"
_FOLDERS = "folders"  # .incoming/folders/KEY: a folder upload's staging area
STALE_SECONDS = 24 * 3600  # a partial upload untouched this long is removed
MAX_UNFINISHED = 1000  # partial uploads and folder staging areas waiting at once
# (getattr: importable where the daemon cannot run, to say why: tether.daemon.posix)
DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | \
    getattr(os, "O_CLOEXEC", 0)


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


def case_twin(folder: int, part: str) -> str | None:
    """An entry of the open `folder` that is `part` on a case-insensitive disk
    but spelled otherwise ("Model.bin" for "model.bin"), unless `part` itself
    is there too (a case-sensitive disk holding both); else None."""
    entries = os.listdir(folder)
    if part in entries:
        return None
    key = folded(part)
    return next((entry for entry in entries if folded(entry) == key), None)


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
    # (case-folded: on a case-insensitive disk, macOS's, ".INCOMING" is the same folder)
    if any(part in ("", ".", "..") for part in parts) or folded(parts[0]) == INCOMING:
        raise _refuse_name(name, "has an empty, '.' or '..' component")
    if len(parts) > MAX_DEPTH:
        raise _refuse_name(name, f"is {len(parts)} folders deep; at most {MAX_DEPTH}")
    for part in parts:
        if len(part.encode()) > MAX_COMPONENT_BYTES:
            raise _refuse_name(name, f"has a component of {len(part.encode())} bytes; "
                                     f"at most {MAX_COMPONENT_BYTES}")
        if windows_reserved(part):
            raise _refuse_name(name, f"uses {part.split('.')[0]!r}, a name Windows reserves")
    return Path(*parts)


class _Upload:
    """One upload's bytes on their way to the file: checked, hashed, and for a
    resumable one kept under its identity (.incoming/ID.partial) until done."""

    def __init__(self, name: str, size: int, sha256: str, offset: int, folder: str) -> None:
        if sha256 and not _is_hex(sha256, 64):
            raise _refuse_name(name, "names its content with a sha256 that is not 64 hex digits")
        if folder and not _is_hex(folder, 64):
            raise _refuse_name(name, "belongs to a folder upload whose key is not 64 hex digits")
        if offset and not sha256:
            raise _refuse_name(name, "resumes without naming its content (sha256)")
        if offset > size:
            raise _refuse_name(name, f"resumes at byte {offset} of a {size}-byte file")
        self.name, self.size, self.sha256, self.offset = name, size, sha256, offset
        self.written = offset
        self._digest = hashlib.sha256()
        self._spoiled = False  # kept bytes that must not be resumed: removed
        identity = hashlib.sha256(f"{folder}\0{name}\0{size}\0{sha256}".encode()).hexdigest()
        self.partial_name = f"{identity[:40] if sha256 else secrets.token_hex(8)}.partial"

    @contextlib.contextmanager
    def partial_file(self, incoming: int) -> Iterator[tuple[BinaryIO, str]]:
        exclusive = 0 if self.sha256 else os.O_EXCL
        fd = os.open(self.partial_name, os.O_RDWR | os.O_CREAT | exclusive | os.O_NOFOLLOW
                     | os.O_CLOEXEC, FILE_MODE, dir_fd=incoming)
        keep = bool(self.sha256)
        try:
            with os.fdopen(fd, "r+b") as out:
                if self.sha256:
                    self._resume(out, incoming)
                yield out, self.partial_name
        finally:
            with contextlib.suppress(OSError):
                empty = os.stat(self.partial_name, dir_fd=incoming).st_size == 0
                if not keep or self._spoiled or empty:  # nothing worth resuming
                    os.unlink(self.partial_name, dir_fd=incoming)

    def _resume(self, out: BinaryIO, incoming: int) -> None:
        if not try_lock(out.fileno()):  # released when closed
            raise Busy(f"upload {clip(self.name, 100)!r} is going on over another connection; "
                       "try again when it has ended")
        mine = os.fstat(out.fileno())
        try:
            named = os.stat(self.partial_name, dir_fd=incoming, follow_symlinks=False)
        except FileNotFoundError:
            named = None
        # Placed meanwhile by the call that held the lock: that inode is the result now.
        if named is None or named.st_ino != mine.st_ino or mine.st_nlink != 1:
            raise Busy(f"upload {clip(self.name, 100)!r} has just been completed by another "
                       "connection; ask where to resume (UploadStatus)")
        held = mine.st_size
        if self.offset == 0:
            out.truncate(0)
        elif held != self.offset:
            raise _refuse_name(self.name, f"resumes at byte {self.offset}, but the daemon holds "
                                          f"{held}: ask where to resume (UploadStatus)")
        out.seek(self.offset)

    def write(self, out: BinaryIO, chunk: bytes) -> None:
        self.written += len(chunk)
        if self.written > self.size:
            self._spoiled = True
            raise _refuse_name(self.name, f"sent more than its {self.size} bytes")
        if not self.sha256:
            self._digest.update(chunk)
        out.write(chunk)

    def finished(self, out: BinaryIO) -> str:
        """The content's sha256 once every byte is there (kept for a resume if not)."""
        if self.written != self.size:
            raise _refuse_name(self.name, f"ended after {self.written} of {self.size} bytes")
        out.flush()
        if not self.sha256:
            return self._digest.hexdigest()
        out.seek(0)
        if sha256_of(out) != self.sha256:  # what is on disk, parts from several calls
            self._spoiled = True
            raise DataCorrupted(f"upload {clip(self.name, 100)!r}: its bytes do not match the "
                                "sha256 it was sent with; send it again")
        return self.sha256


def _refuse_twins_among(name: str, files: Sequence[str]) -> None:
    """A folder whose files' names differ only in case would land on a macOS or
    Windows disk with one file written over the other."""
    found = twins(files)
    if found:
        raise _refuse_name(name, f"holds {found[0]!r} and {found[1]!r}, names that differ "
                                 "only in case (one on macOS and Windows disks)")


def _is_hex(text: str, length: int) -> bool:
    return len(text) == length and all(ch in "0123456789abcdef" for ch in text)


class ResultsSink:
    def __init__(self, root: Path, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        private_dir(root, tighten=False)  # a folder the user chose keeps its mode
        private_dir(root / INCOMING)
        self._lock = threading.Lock()
        # Held from a name's twin check to its creation (a folder made, a file or
        # a folder put in place), so that no twin appears in between.
        self._naming = threading.Lock()
        self._reserved = 0  # bytes that uploads in progress have yet to write
        self._entries: int | None = None  # counted on the first upload
        private_dir(root / INCOMING / _FOLDERS)
        self.clean_stale()

    def _count_entries(self) -> int:
        count = 0
        for folder, dirs, files in os.walk(self.root):  # links are not followed
            if folder == str(self.root):
                dirs[:] = [d for d in dirs if d != INCOMING]
            count += len(dirs) + len(files)
        return count

    def _reserve(self, size: int, entries: int = 1) -> None:
        """Room for `size` more bytes and `entries` more files and folders, or UploadRefused."""
        if size > self.max_bytes:
            raise UploadRefused(f"upload of {size} bytes is over the daemon's cap of "
                                f"{self.max_bytes} bytes (tether serve --max-upload)")
        with self._lock:
            if self._entries is None:
                self._entries = self._count_entries()
            if self._entries + entries > self.max_entries:
                raise UploadRefused(f"the results folder holds {self._entries} files and "
                                    f"folders; the daemon takes at most {self.max_entries}")
            free = shutil.disk_usage(self.root).free
            if size + FREE_DISK_MARGIN + self._reserved > free:
                raise UploadRefused(f"upload of {size} bytes does not fit: {free} bytes free, "
                                    f"{self._reserved} of them promised to uploads in progress")
            self._reserved += size

    def _add_entries(self, count: int) -> None:
        with self._lock:
            if self._entries is not None:  # (else counted whole on the next upload)
                self._entries += count

    def _release(self, nbytes: int) -> None:
        with self._lock:
            self._reserved -= nbytes

    def store(self, name: str, size: int, chunks: Iterable[bytes], overwrite: bool = False,
              sha256: str = "", offset: int = 0, folder: str = "") -> Stored:
        """Write `size` bytes from `chunks` as `name`; all or nothing.

        With `sha256` (the whole content's) the upload is resumable: what
        arrives is kept under its identity when the call breaks, and a call
        with `offset` (what `held` says) goes on from there. With `folder`,
        `name` is inside that folder upload's staging area (finish_folder)."""
        relative = safe_relative(name)
        upload = _Upload(name, size, sha256, offset, folder)
        if time.monotonic() - self._cleaned > 3600:
            self.clean_stale()
        if sha256 and not offset:
            self._check_unfinished(name)
        self._reserve(size - offset)
        unwritten = size - offset
        fds: list[int] = []  # the results folder (or staging), then each folder below
        made: list[tuple[int, str]] = []  # counted folders this upload made: (parent's fd, name)
        incoming = None
        done = False
        try:
            fds.append(os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
            incoming = os.open(INCOMING, DIR_FLAGS, dir_fd=fds[0])
            if folder:  # a staging area is not the results folder yet: not counted
                fds.append(os.open(INCOMING, DIR_FLAGS, dir_fd=fds[0]))
                self._descend(name, (_FOLDERS, folder), fds, [], counted=False)
            self._descend(name, relative.parts[:-1], fds, made, counted=not folder)
            leaf, target = relative.parts[-1], fds[-1]
            existed = self._check_target(name, leaf, target, overwrite or bool(folder),
                                         staged=bool(folder))
            with upload.partial_file(incoming) as (out, partial):
                for chunk in chunks:
                    upload.write(out, chunk)
                    self._release(len(chunk))
                    unwritten -= len(chunk)
                digest = upload.finished(out)
                with self._naming:
                    if not folder:
                        self._refuse_twin(name, leaf, target)
                    self._place(name, partial, incoming, leaf, target, overwrite or bool(folder))
            self._add_entries(not existed and not folder)
            done = True
        except OSError as exc:  # say what failed without the daemon's own paths
            raise UploadRefused(f"cannot store {clip(name, 100)!r}: "
                                f"{exc.strerror or type(exc).__name__}") from None
        finally:
            self._release(unwritten)
            if not done:
                for parent, part in reversed(made):
                    with contextlib.suppress(OSError):  # another upload may use it now
                        os.rmdir(part, dir_fd=parent)
                        self._add_entries(-1)
            for fd in (*fds, *([incoming] if incoming is not None else [])):
                os.close(fd)
        log.info("stored result %s (%d bytes)", clip(str(relative)), size)
        return Stored(str(relative), size, digest)

    def _check_unfinished(self, name: str) -> None:
        """Refuse a new resumable upload when MAX_UNFINISHED wait already: each
        keeps its bytes for a day, and the holder of the URL may not fill the disk."""
        incoming = self.root / INCOMING
        waiting = sum(1 for _ in incoming.glob("*.partial")) + \
            sum(1 for _ in incoming.glob(f"{_FOLDERS}/*"))
        if waiting >= MAX_UNFINISHED:
            raise _refuse_name(name, f"cannot start: {waiting} unfinished uploads wait to be "
                                     "resumed (each is removed a day after its last byte)")

    def held(self, name: str, size: int, sha256: str, folder: str = "") -> int:
        """Bytes of this resumable upload the daemon holds (0: none)."""
        safe_relative(name)
        upload = _Upload(name, size, sha256, 0, folder)
        try:
            return min(size, (self.root / INCOMING / upload.partial_name).stat().st_size)
        except FileNotFoundError:
            return 0

    def finish_folder(self, key: str, name: str, files: Sequence[str],
                      overwrite: bool = False) -> Stored:
        """Make folder upload `key` appear as `name`, by one rename: a reader sees
        nothing of it, then all of it. Every file of `files` must be there."""
        relative = safe_relative(name)
        if not _is_hex(key, 64):
            raise _refuse_name(name, "names a folder upload whose key is not 64 hex digits")
        staging = self.root / INCOMING / _FOLDERS / key
        if staging.is_symlink() or not staging.is_dir():
            raise _refuse_name(name, "has no files uploaded yet: upload them, then finish")
        held = {str(p.relative_to(staging)): p.stat().st_size for p in staging.rglob("*")
                if p.is_file() and not p.is_symlink()}
        _refuse_twins_among(name, files)
        missing = sorted({str(safe_relative(f)) for f in files} - set(held))
        if missing or len(held) != len(set(files)):
            raise _refuse_name(name, f"is incomplete: {len(missing)} of its {len(files)} files "
                                     f"are missing ({', '.join(missing[:3])})")
        entries = sum(1 for _ in staging.rglob("*")) + 1
        self._reserve(0, entries)
        fds: list[int] = [os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]
        folders = os.open(f"{INCOMING}/{_FOLDERS}", DIR_FLAGS, dir_fd=fds[0])
        try:
            self._descend(name, relative.parts[:-1], fds, [])
            with self._naming:
                self._swap_in(name, key, folders, relative.parts[-1], fds[-1], overwrite)
        except OSError as exc:
            raise UploadRefused(f"cannot store {clip(name, 100)!r}: "
                                f"{exc.strerror or type(exc).__name__}") from None
        finally:
            for fd in (*fds, folders):
                os.close(fd)
        self._add_entries(entries)
        manifest = "".join(f"{n}\0{held[n]}\n" for n in sorted(held))
        log.info("stored result folder %s (%d files)", clip(str(relative)), len(held))
        return Stored(str(relative), sum(held.values()),
                      hashlib.sha256(manifest.encode()).hexdigest())

    def _swap_in(self, name: str, key: str, folders: int, leaf: str, parent: int,
                 overwrite: bool) -> None:
        """Rename staging folder `key` to `leaf`; an existing folder goes only with
        `overwrite`, moved aside first and removed after (never a file or a link)."""
        self._refuse_twin(name, leaf, parent)
        try:
            mode = os.stat(leaf, dir_fd=parent, follow_symlinks=False).st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None and not stat.S_ISDIR(mode):
            raise _refuse_name(name, "exists and is a file or a link")
        if mode is not None and not overwrite:
            raise _refuse_name(name, "exists; upload with overwrite=True to replace it")
        if mode is None:
            os.rename(key, leaf, src_dir_fd=folders, dst_dir_fd=parent)
            return
        aside = f"replaced-{secrets.token_hex(8)}"
        os.rename(leaf, aside, src_dir_fd=parent, dst_dir_fd=folders)
        try:
            os.rename(key, leaf, src_dir_fd=folders, dst_dir_fd=parent)
        except OSError:  # (something appeared there meanwhile): the old folder goes back
            os.rename(aside, leaf, src_dir_fd=folders, dst_dir_fd=parent)
            raise
        old = self.root / INCOMING / _FOLDERS / aside
        self._add_entries(-sum(1 for _ in old.rglob("*")) - 1)
        shutil.rmtree(old, ignore_errors=True)

    def clean_stale(self, now: float | None = None) -> int:
        """Remove partial uploads and folder staging areas untouched for
        STALE_SECONDS; how many went. Run at start and hourly after."""
        cutoff = (now if now is not None else time.time()) - STALE_SECONDS
        incoming, removed = self.root / INCOMING, 0
        for entry in (*incoming.glob("*.partial"), *incoming.glob(f"{_FOLDERS}/*")):
            paths = [entry, *entry.rglob("*")] if entry.is_dir() else [entry]
            if max(p.lstat().st_mtime for p in paths) < cutoff:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
                removed += 1
        self._cleaned = time.monotonic()
        return removed

    def _descend(self, name: str, folders: Sequence[str], fds: list[int],
                 made: list[tuple[int, str]], counted: bool = True) -> None:
        """Open each of `folders` below fds[-1] in turn (making those missing,
        never through a link), adding each one's fd to `fds` and each made one to `made`."""
        for part in folders:
            with self._naming if counted else contextlib.nullcontext():
                if counted:  # (the staging area's twins are refused when the folder finishes)
                    self._refuse_twin(name, part, fds[-1])
                try:
                    os.mkdir(part, DIR_MODE, dir_fd=fds[-1])
                    if counted:  # (a staging area's folders are neither counted nor uncounted)
                        made.append((fds[-1], part))
                        self._add_entries(1)
                except FileExistsError:
                    pass
            try:
                fds.append(os.open(part, DIR_FLAGS, dir_fd=fds[-1]))
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _refuse_name(name, "needs a folder where a link or a file is") from None
                raise

    @staticmethod
    def _refuse_twin(name: str, part: str, folder: int) -> None:
        """UploadRefused when `folder` holds `part` spelled otherwise: one entry on
        macOS's and Windows' disks, two on Linux's, so the upload would write
        into (or replace) a file or folder of another name there, and a copy of
        the results to such a disk would lose one of the two."""
        twin = case_twin(folder, part)
        if twin is not None:
            raise _refuse_name(name, f"names {part!r} where {twin!r} exists, a name that "
                                     "differs only in case (one file on macOS and Windows "
                                     "disks): use the existing spelling")

    @classmethod
    def _check_target(cls, name: str, leaf: str, folder: int, overwrite: bool,
                      staged: bool = False) -> bool:
        """Whether the target exists (a file that may be replaced); else UploadRefused.
        (`staged`: in a folder upload's staging area, checked whole when it finishes.)"""
        if not staged:
            cls._refuse_twin(name, leaf, folder)
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
            if relative.parts[0] != INCOMING and path.is_file() and not path.is_symlink():
                stat_ = path.stat()
                yield str(relative), stat_.st_size, stat_.st_mtime
