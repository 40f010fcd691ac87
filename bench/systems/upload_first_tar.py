"""Upload-first for images: tar the folder, move it, untar, then decode every image.

What people do today with an image folder: the server side streams a tar of
the folder (created as it is sent, so its cost is in the time), the client
saves the whole file, unpacks it, and only then decodes the images with the
same tether.wire.images.decode.decode_image the loader uses, in as many threads as the
loader's decode threads, a batch at a time. The time to the first batch
includes the whole transfer and the unpacking.
"""

from __future__ import annotations

import http.server
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..data import IMAGES
from ..image_data import image_files
from .base import Address, Batch, System
from .tether_images import IMAGE_SIZE


class _Counter:
    """A write-only file that only counts: the tar's size without writing it."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)


def _tar(folder: Path, out) -> None:
    with tarfile.open(fileobj=out, mode="w|") as tar:
        tar.add(folder, arcname=folder.name)


def serve(folder: Path) -> None:
    """HTTP on a free port: GET streams a tar of `folder` (no Content-Length)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-tar")
            self.end_headers()
            _tar(folder, self.wfile)

        def log_message(self, *args) -> None:  # no line per request on stderr
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


def _labels(root: Path, files: list[Path]) -> np.ndarray | None:
    """Class indices in the sorted class folder names, as Tether labels them."""
    classes = sorted({f.relative_to(root).parts[0] for f in files if f.parent != root})
    if not classes:
        return None
    index = {name: i for i, name in enumerate(classes)}
    return np.array([index[f.relative_to(root).parts[0]] for f in files], np.int64)


class UploadFirstTar(System):
    name = "upload-first (tar)"
    family = IMAGES

    def start(self, dataset: Path, workdir: Path) -> Address:
        self.size = _Counter()
        _tar(dataset, self.size)  # the same stream the server sends, counted
        return ("127.0.0.1", int(self._spawn("tether.bench.servers", "tar", str(dataset))))

    def batches(self, dataset: Path, address: Address | None,
                batch_size: int) -> Iterator[Batch]:
        from tether.wire.images.decode import decode_images

        with tempfile.TemporaryDirectory(prefix="upload-first-") as tmp:
            archive = Path(tmp) / "data.tar"
            with urllib.request.urlopen(f"http://{address[0]}:{address[1]}/") as response, \
                    open(archive, "wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
            with tarfile.open(archive) as tar:
                extract = {"filter": "data"} if sys.version_info >= (3, 12) else {}
                tar.extractall(tmp, **extract)
            archive.unlink()
            root = Path(tmp) / dataset.name
            files = image_files(root)
            labels = _labels(root, files)
            threads = int(os.environ.get("TETHER_DECODE_THREADS", 0)) or min(4, os.cpu_count())
            with ThreadPoolExecutor(threads) as pool:
                for start in range(0, len(files), batch_size):
                    chunk = files[start:start + batch_size]
                    pixels, _ = decode_images([f.read_bytes() for f in chunk], IMAGE_SIZE,
                                              [str(f) for f in chunk], pool=pool)
                    batch = {"image": pixels}
                    if labels is not None:
                        batch["label"] = labels[start:start + batch_size]
                    yield batch

    def wire_bytes(self, dataset: Path) -> int:
        return self.size.size
