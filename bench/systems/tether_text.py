"""Tether on token lists (bench.text_data): packed, or pre-padded on disk.

- "pack" serves `lists.parquet` and packs it on the loader:
  tokens [B, 512] with segment ids (0 on padding) and positions.
- "padded" serves `padded.parquet`, fixed-size rows already padded to 512,
  as plain tensors, with each row's length.

Both count real tokens, those that are not padding: packing puts several
sequences in a row, so rows/s says little; tokens/s is what a step trains on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..data import TEXT
from ..text_data import LENGTH
from .base import Batch
from .tether_stream import TetherSystem


class TetherText(TetherSystem):
    family = TEXT
    unit = "tokens"

    def __init__(self, layout: str) -> None:
        super().__init__("auto")
        self.layout = layout  # "pack" or "padded"
        self.name = f"tether {layout}"

    def _file(self) -> str:
        return "lists" if self.layout == "pack" else "padded"

    def served(self, dataset: Path, workdir: Path) -> Path:
        return dataset / f"{self._file()}.parquet"

    def dataset_name(self, dataset: Path) -> str:
        return self._file()

    def loader_options(self) -> dict[str, Any]:
        return {"pack": {"tokens": LENGTH}} if self.layout == "pack" else {}

    def units(self, batch: Batch) -> int:
        if self.layout == "pack":
            return int(np.count_nonzero(batch["tokens_segment_ids"]))
        return int(batch["tokens_length"].sum())
