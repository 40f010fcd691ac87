"""NumPy `.npz`: each member is a column.

Members stored uncompressed (`np.savez`) are memory-mapped in place inside
the zip; compressed ones (`np.savez_compressed`) are unpacked once into the
daemon's cache and mapped from there, so memory stays bounded either way.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np

from ..private import create_private, make_private, private_dir
from .base import fingerprint
from .npy import ArraySource

_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zip local file header, 30 bytes
_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def _map_stored(path: Path, info: zipfile.ZipInfo) -> np.ndarray:
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        fields = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
        name_len, extra_len = fields[-2], fields[-1]
        f.seek(info.header_offset + _LOCAL_HEADER.size + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        read_header = _HEADER_READERS.get(version)
        if read_header is None:
            raise ValueError(f"member {info.filename} uses .npy format {version}")
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
    if dtype.hasobject:
        raise ValueError(f"member {info.filename} holds Python objects")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                     order="F" if fortran else "C").view(np.ndarray)


def _unpack(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo,
            cache_dir: Path) -> np.ndarray:
    # Named by a hash of the member's name: a name like "../../x.npy" or
    # "/etc/x.npy" in a hostile archive must not choose where the copy goes.
    member = hashlib.sha256(info.filename.encode()).hexdigest()[:32]
    private_dir(cache_dir)
    folder = private_dir(cache_dir / f"{path.stem}-{fingerprint([path])}")
    target = folder / f"{member}.npy"
    if not target.exists():
        partial = folder / f"{member}.partial"
        with archive.open(info) as src, os.fdopen(create_private(partial), "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        partial.replace(target)
    make_private(target)
    return np.load(target, mmap_mode="r", allow_pickle=False).view(np.ndarray)


class NpzSource(ArraySource):
    format = "npz"

    def __init__(self, name: str, paths: list[Path], cache_dir: Path) -> None:
        arrays = {}
        with zipfile.ZipFile(paths[0]) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                column = info.filename[: -len(".npy")]
                if info.compress_type == zipfile.ZIP_STORED:
                    arrays[column] = _map_stored(paths[0], info)
                else:
                    arrays[column] = _unpack(paths[0], archive, info, cache_dir)
        if not arrays:
            raise ValueError("the archive holds no .npy members")
        super().__init__(name, paths, arrays)
