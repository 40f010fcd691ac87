"""What a daemon keeps across restarts, so that it comes back at the same URL.

`tether serve` started again with the same paths and host (after a crash,
`kill -9`, a reboot) reuses the port it had, so loaders waiting to
reconnect find it. Kept as JSON in a folder of the state directory named by
a hash of those arguments; the security issue adds the token and
certificate here.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path


def identity_dir(state_dir: Path, paths: Sequence[Path], host: str) -> Path:
    key = "\0".join([host, *sorted(str(Path(p).resolve()) for p in paths)])
    return state_dir / "daemons" / hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass
class Identity:
    port: int = 0

    @classmethod
    def load(cls, folder: Path) -> Identity:
        try:
            return cls(**json.loads((folder / "identity.json").read_text()))
        except (OSError, ValueError, TypeError):
            return cls()

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / "identity.json.partial"
        partial.write_text(json.dumps(asdict(self)))
        os.replace(partial, folder / "identity.json")  # atomic: a crash keeps the old one
