"""Results back home: uploads land in one folder the daemon owns, and nowhere else.

A name is a relative "/"-separated path. Refused: absolute paths, `..`,
empty or dot components, backslashes, NUL and other control characters,
and any existing link or non-folder on the way. Bytes go to a temporary
file inside the folder and are renamed into place only once complete and of
the declared size, so a reader never sees half a file; a size cap and a
free-disk check refuse what cannot fit before a byte is written.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tether.wire.errors import RequestError

from .private import DIR_MODE, private_dir

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 10 << 30
FREE_DISK_MARGIN = 256 << 20  # never fill the disk to the last byte
_INCOMING = ".incoming"


class UploadRefused(RequestError):
    """An upload that names a path outside the results folder, or cannot fit."""


@dataclass(frozen=True)
class Stored:
    name: str
    size: int
    sha256: str


def safe_relative(name: str) -> Path:
    """`name` as a path inside the results folder, or UploadRefused."""
    if not name or len(name) > 1024:
        raise UploadRefused("an upload needs a name of 1 to 1024 characters")
    if any(ord(ch) < 32 or ch in "\\\x7f" for ch in name):
        raise UploadRefused(f"upload name {name!r} holds a control character or a backslash")
    if name.startswith("/"):
        raise UploadRefused(f"upload name {name!r} is absolute; give a path inside the folder")
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts) or parts[0] == _INCOMING:
        raise UploadRefused(f"upload name {name!r} has an empty, '.' or '..' component")
    return Path(*parts)


class ResultsSink:
    def __init__(self, root: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = root
        self.max_bytes = max_bytes
        private_dir(root, tighten=False)  # a folder the user chose keeps its mode
        private_dir(root / _INCOMING)

    def _target(self, relative: Path) -> Path:
        """Make the parent folders, refusing any link or file on the way."""
        folder = self.root
        for part in relative.parts[:-1]:
            folder = folder / part
            if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
                raise UploadRefused(f"{folder.relative_to(self.root)} is a link or a file")
            folder.mkdir(mode=DIR_MODE, exist_ok=True)
        target = folder / relative.parts[-1]
        if target.is_symlink() or target.is_dir():
            raise UploadRefused(f"{relative} exists and is a link or a folder")
        return target

    def _check_room(self, size: int) -> None:
        if size > self.max_bytes:
            raise UploadRefused(f"upload of {size} bytes is over the daemon's cap of "
                                f"{self.max_bytes} bytes (tether serve --max-upload)")
        free = shutil.disk_usage(self.root).free
        if size + FREE_DISK_MARGIN > free:
            raise UploadRefused(f"upload of {size} bytes does not fit: {free} bytes free "
                                f"under {self.root}")

    def store(self, name: str, size: int, chunks: Iterable[bytes]) -> Stored:
        """Write `size` bytes from `chunks` as `name`; all or nothing."""
        relative = safe_relative(name)
        self._check_room(size)
        target = self._target(relative)
        digest, written = hashlib.sha256(), 0
        fd, partial = tempfile.mkstemp(dir=self.root / _INCOMING)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    written += len(chunk)
                    if written > size:
                        raise UploadRefused(f"upload {name!r} sent more than its {size} bytes")
                    digest.update(chunk)
                    out.write(chunk)
            if written != size:
                raise UploadRefused(f"upload {name!r} ended after {written} of {size} bytes")
            os.replace(partial, target)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
        log.info("stored result %s (%d bytes)", relative, size)
        return Stored(str(relative), size, digest.hexdigest())

    def listing(self) -> Iterator[tuple[str, int, float]]:
        """(name, size, modification time) of every stored result."""
        for path in sorted(self.root.rglob("*")):
            relative = path.relative_to(self.root)
            if relative.parts[0] != _INCOMING and path.is_file() and not path.is_symlink():
                stat = path.stat()
                yield str(relative), stat.st_size, stat.st_mtime
