"""Tether on an image folder: batches of uint8 [B, 224, 224, 3] pixels and labels.

`decode` is the loader's: "loader" sends the files and decodes them in the
loader's decode threads, "daemon" decodes on the daemon and sends pixels,
"auto" picks per shard (tether.daemon.stream.decode_policy). The `path` column is
left out: a training step wants pixels and labels, and strings cannot
become a jax.Array.
"""

from __future__ import annotations

from typing import Any

from ..data import IMAGES
from .tether_stream import TetherSystem

IMAGE_SIZE = (224, 224)


class TetherImages(TetherSystem):
    family = IMAGES

    def __init__(self, decode: str) -> None:
        super().__init__("auto")
        self.decode = decode
        self.name = f"tether decode={decode}"

    def loader_options(self) -> dict[str, Any]:
        return {"image_size": IMAGE_SIZE, "decode": self.decode, "columns": ["image", "label"]}
