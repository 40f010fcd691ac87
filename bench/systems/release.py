"""Tether as its first release (commit d7997d8) had it: the baseline of its own speed.

The release's daemon and its loader run from a copy of that commit's tree,
laid out as the installed package (`loader` as `tether`, `daemon` as
`tether.daemon`, `bench` as `tether.bench`) and put first on PYTHONPATH of
both processes; its own bench client runs it, with its own registry name.
The copy is made once per folder with `git archive`, so this needs the git
checkout the bench runs from.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from .base import Address, System

RELEASE = "d7997d8"
_LAYOUT = {"loader": "tether", "daemon": "tether/daemon", "bench": "tether/bench"}
_URL_VARIABLE = "TETHER_BENCH_URL"  # the name the release's bench client reads too


def release_tree(folder: Path, ref: str = RELEASE) -> Path:
    """`ref`'s package laid out under `folder/site-REF` (made once); the path to put
    on PYTHONPATH."""
    site = folder / f"site-{ref}"
    if site.is_dir():
        return site
    checkout = Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        archive = Path(tmp) / "tree.tar"
        done = subprocess.run(["git", "-C", str(checkout), "archive", "-o", str(archive), ref],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"the release baseline needs Tether's git checkout (git archive "
                               f"{ref} in {checkout}): {done.stderr.strip()}")
        with tarfile.open(archive) as tar:
            tar.extractall(Path(tmp) / "tree", filter="data")
        staged = Path(tmp) / "site"
        for source, target in _LAYOUT.items():
            shutil.copytree(Path(tmp) / "tree" / source, staged / target, dirs_exist_ok=True)
        staged.rename(site)
    return site


class TetherRelease(System):
    """The release's daemon and loader, `codec="none"`, plain or with pinned TLS."""

    default = False  # asked for by name (the loopback targets)

    def __init__(self, tls: bool = False) -> None:
        self.tls = tls
        self.name = f"tether none {RELEASE}" + (" +TLS" if tls else "")
        self.client_name = "tether-none-tls" if tls else "tether-none"

    def start(self, dataset: Path, workdir: Path) -> Address:
        from tether.daemon.spawn import start_module

        self._site = release_tree(workdir.parent)
        self.proc, url = start_module(
            "tether.daemon", str(dataset), "--port", "0", "--state-dir",
            str(workdir / "tether-state"), "--log-level", "error",
            *(() if self.tls else ("--insecure",)), timeout=60,
            env=self._path())
        self.url = url  # the release's URL form, read by the release's loader only
        where = urlsplit(url)
        return (where.hostname, where.port)

    def _path(self) -> dict[str, str]:
        """The release first on the path, before whatever the caller's has."""
        paths = [str(self._site), *filter(None, [os.environ.get("PYTHONPATH")])]
        return {"PYTHONPATH": os.pathsep.join(paths)}

    def client_env(self) -> dict[str, str]:
        return {**self._path(), _URL_VARIABLE: self.url}

    def batches(self, dataset, address, batch_size):
        raise NotImplementedError("runs in the release's own client (client_name)")

    def wire_bytes(self, dataset: Path) -> int | None:
        return None
