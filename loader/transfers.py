"""Files between the GPU side and home, resumable (docs/results.md).

Uploads name their content (SHA-256), so the daemon keeps what it received
under that identity when a connection breaks; a retry asks where to resume
(UploadStatus) and sends only the rest. A folder's files go to a staging
area on the daemon and appear under their name by one rename (FinishFolder).
Downloads write `FILE.tether-partial` beside the destination, resume from
its size while the daemon's copy is the same version, check the SHA-256 of
what they wrote, then rename it into place. Both move 1 MiB at a time:
memory stays flat whatever the size.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

import grpc

from .retry import RetryPolicy
from .upload import CHUNK_BYTES, PROGRESS_FROM_BYTES, Progress, open_source
from .wire import rpc
from .wire.checksums import sha256_of
from .wire.errors import (
    Busy,
    ConnectionFailed,
    DataCorrupted,
    DatasetError,
    DatasetNotFound,
    RequestError,
    from_rpc_error,
)
from .wire.names import twins, unsafe_here
from .wire.v1 import tether_pb2 as pb

PARTIAL = ".tether-partial"  # a download in progress, beside its destination
OVERWRITE_METADATA = "tether-overwrite"  # the daemon's results.OVERWRITE_METADATA


class RemoteFile(NamedTuple):
    name: str
    size: int
    modified: float  # seconds since the epoch


class _Source:
    """Bytes to upload, read again from any offset (a resume), and their SHA-256.
    A file is open only while it is read: a folder of thousands stays under the
    open-files limit."""

    def __init__(self, data: bytes | str | os.PathLike) -> None:
        self._data = data
        stream, self.size = open_source(data)
        with stream:
            self.sha256 = sha256_of(stream)

    def _open(self) -> BinaryIO:
        return open_source(self._data)[0]

    def blocks(self, offset: int) -> Iterator[bytes]:
        with self._open() as stream:
            stream.seek(offset)
            while block := stream.read(CHUNK_BYTES):
                yield block


class Transfers:
    """The resumable calls of one client (its channel, token and RetryPolicy)."""

    def __init__(self, channel: grpc.Channel, metadata: tuple, retry: RetryPolicy,
                 call: Callable[[str, object], object]) -> None:
        self._metadata = metadata
        self.retry = retry
        self._unary = call  # Client._call: a unary call, its errors as Tether's
        self._upload = channel.stream_unary(
            rpc.method_path(rpc.UPLOAD), request_serializer=pb.UploadChunk.SerializeToString,
            response_deserializer=pb.UploadResult.FromString)
        self._download = channel.unary_stream(
            rpc.method_path(rpc.DOWNLOAD), request_serializer=pb.DownloadRequest.SerializeToString,
            response_deserializer=pb.DownloadChunk.FromString)
        self.sent = self.received = 0  # bytes of file data, retries included
        self.throttle: Callable[[int], None] | None = None  # tether.sync's max_rate

    # Uploads.

    def upload(self, name: str, data: bytes | str | os.PathLike, progress: bool | None,
               overwrite: bool) -> pb.UploadResult:
        if isinstance(data, str | os.PathLike) and Path(data).is_dir():
            return self._upload_folder(name, Path(data), progress, overwrite)
        source = _Source(data)
        return self._upload_file(name, source, overwrite, "", _bar(name, source.size, progress))

    def _upload_file(self, name: str, source: _Source, overwrite: bool, folder: str,
                     bar: Progress) -> pb.UploadResult:
        metadata = (*self._metadata, (OVERWRITE_METADATA, "1")) if overwrite else self._metadata

        def attempt() -> pb.UploadResult:
            offset = self._unary("UploadStatus", pb.UploadProbe(
                name=name, total_size=source.size, sha256=source.sha256, folder=folder)).offset
            bar.done = offset
            try:
                return self._upload(self._chunks(name, source, offset, folder, bar),
                                    metadata=metadata)
            except grpc.RpcError as exc:
                raise _retryable(from_rpc_error(exc)) from None

        return self.retry.call(attempt)

    def _chunks(self, name: str, source: _Source, offset: int, folder: str,
                bar: Progress) -> Iterator[pb.UploadChunk]:
        head = pb.UploadChunk(name=name, total_size=source.size, sha256=source.sha256,
                              offset=offset, folder=folder)
        for block in source.blocks(offset):
            if self.throttle is not None:
                self.throttle(len(block))
            self.sent += len(block)
            bar.advance(len(block))
            head.data = block
            yield head
            head = pb.UploadChunk()
        if head.name:  # an empty file, or nothing left: the header alone
            yield head

    def _upload_folder(self, name: str, folder: Path, progress: bool | None,
                       overwrite: bool) -> pb.UploadResult:
        files = _files_of(folder)
        sources = {relative: _Source(folder / relative) for relative in files}
        manifest = json.dumps([[r, s.size, s.sha256] for r, s in sources.items()])
        key = hashlib.sha256(f"{name}\0{manifest}".encode()).hexdigest()
        bar = _bar(name, sum(s.size for s in sources.values()), progress)
        for relative, source in sources.items():
            self._upload_file(relative, source, True, key, _Shifted(bar, bar.done))
        request = pb.FinishFolderRequest(folder=key, name=name, files=files,
                                         overwrite=overwrite)
        return self.retry.call(lambda: self._unary("FinishFolder", request))

    # Downloads.

    def download(self, name: str, dest: str | os.PathLike) -> Path:
        dest = Path(dest)
        listed = self.list(name)
        if any(f.name == name for f in listed):
            self._download_file(name, dest)
            return dest
        inside = [f for f in listed if f.name.startswith(name.rstrip("/") + "/")]
        if not inside:
            raise DatasetNotFound(f"nothing named {name!r} in the daemon's results or shares "
                                  "(client.list() shows what there is)")
        relatives = {file.name: file.name[len(name.rstrip("/")) + 1:] for file in inside}
        places = {full: _below(dest, relative, full) for full, relative in relatives.items()}
        found = twins(relatives.values())
        if found:
            raise RequestError(f"{name!r} holds {found[0]!r} and {found[1]!r}, names that "
                               "differ only in case: one file on a macOS or Windows disk; "
                               "download them one by one, each to a path of its own")
        for full, place in places.items():
            self._download_file(full, place)
        return dest

    def _download_file(self, name: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + PARTIAL)
        version = partial.with_name(partial.name + ".sha256")  # what `partial` holds a part of

        def attempt() -> None:
            sha = version.read_text() if version.exists() and partial.exists() else ""
            offset = partial.stat().st_size if sha else 0
            try:
                chunks = self._download(pb.DownloadRequest(name=name, offset=offset,
                                                           sha256=sha), metadata=self._metadata)
                info = next(chunks).file
                version.write_text(info.sha256)
                with open(partial, "ab" if offset else "wb") as out:
                    for chunk in chunks:
                        out.write(chunk.data)
                        self.received += len(chunk.data)
            except grpc.RpcError as exc:
                error = from_rpc_error(exc)
                if isinstance(error, DatasetError) and sha:  # changed at home: from the start
                    partial.unlink(missing_ok=True)
                    version.unlink(missing_ok=True)
                    raise ConnectionFailed(f"{name!r} changed at home; downloading it again") \
                        from None
                raise error from None
            _check_and_place(partial, version, dest, info)

        self.retry.call(attempt)

    def list(self, prefix: str = "") -> list[RemoteFile]:
        listed = self._unary("Files", pb.FilesRequest(prefix=prefix))
        if listed.truncated:  # a restore must never be silently partial
            raise RequestError(f"more files start with {prefix!r} than the daemon lists at "
                               f"once ({len(listed.files)}): list or download a narrower prefix")
        return [RemoteFile(f.name, f.size, f.modified) for f in listed.files]


class _Shifted:
    """One file's progress on the bar of its whole folder."""

    def __init__(self, bar: Progress, base: int) -> None:
        self._bar, self._base = bar, base

    @property
    def done(self) -> int:
        return self._bar.done - self._base

    @done.setter
    def done(self, value: int) -> None:
        self._bar.done = self._base + value

    def advance(self, nbytes: int) -> None:
        self._bar.advance(nbytes)


def _bar(name: str, total: int, progress: bool | None) -> Progress:
    show = progress if progress is not None else total >= PROGRESS_FROM_BYTES and \
        sys.stderr.isatty()
    return Progress(name, total, show)


def _retryable(error: Exception) -> Exception:
    """Busy here means the daemon still holds the broken call's lock: retry."""
    return ConnectionFailed(str(error)) if isinstance(error, Busy) else error


def _files_of(folder: Path) -> list[str]:
    """The folder's files, "/"-separated and sorted; a link is refused (it could
    point anywhere on this machine)."""
    files = []
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            raise ValueError(f"upload: {str(path)!r} is a link; a folder upload sends plain "
                             "files only")
        if path.is_file():
            files.append(path.relative_to(folder).as_posix())
    if not files:
        raise ValueError(f"upload: the folder {str(folder)!r} holds no file")
    found = twins(files)
    if found:  # (the daemon refuses it too, once every byte has gone)
        raise ValueError(f"upload: the folder {str(folder)!r} holds {found[0]!r} and "
                         f"{found[1]!r}, names that differ only in case: one file on a macOS "
                         "or Windows disk; rename one")
    return files


def _below(dest: Path, relative: str, name: str) -> Path:
    """Where a listed file goes: below `dest`, whatever the daemon's listing says
    (a listing is not trusted to keep its names out of "..", nor out of what
    Windows reads otherwise)."""
    for part in relative.split("/"):
        why = unsafe_here(part)
        if why:
            raise RequestError(f"cannot download {name!r} here: its name has {why}")
    return dest.joinpath(*relative.split("/"))


def _check_and_place(partial: Path, version: Path, dest: Path, info: pb.FileEntry) -> None:
    """Rename the download into place once its size and SHA-256 are the daemon's."""
    with open(partial, "rb") as written:
        sha256 = sha256_of(written)
    if partial.stat().st_size != info.size or sha256 != info.sha256:
        partial.unlink(missing_ok=True)
        version.unlink(missing_ok=True)
        raise DataCorrupted(f"download of {info.name!r} does not match the daemon's copy "
                            "(size or sha256); download it again")
    os.replace(partial, dest)
    version.unlink(missing_ok=True)

