"""Systems that copy a file over the link before using it: the file is served
by plain HTTP (`python -m http.server`) and the client saves all of it first,
so the time to the first batch includes the whole transfer."""

from __future__ import annotations

import shutil
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory

from .base import Address, System


class HttpCopy(System):
    file_name: str  # the file of the dataset's folder that is copied

    def start(self, dataset: Path, workdir: Path) -> Address:
        self.size = (dataset / self.file_name).stat().st_size
        line = self._spawn("http.server", "0", "--bind", "127.0.0.1", "--directory",
                           str(dataset))
        return ("127.0.0.1", int(line.split(" port ")[1].split()[0]))

    @contextmanager
    def downloaded(self, address: Address) -> Iterator[Path]:
        """The file, copied whole from the server into a temporary folder."""
        with TemporaryDirectory(prefix="download-") as tmp:
            copy = Path(tmp) / self.file_name
            url = f"http://{address[0]}:{address[1]}/{self.file_name}"
            with urllib.request.urlopen(url) as response, open(copy, "wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
            yield copy

    def wire_bytes(self, dataset: Path) -> int:
        return self.size
