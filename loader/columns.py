"""What the daemon's typed columns become in a delivered batch.

The daemon sends text with nulls as text plus a bool mask column, and lists
of strings as one JSON array a row (tether.daemon.sources.arrow_types); here
a text null becomes None and a list of strings a list of `str`. A mask the
request did not ask for (`null_masks`) is dropped once used. Category
columns arrive as codes; their vocabularies are in the stream's plan.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .wire.spec import StreamSpec
from .wire.v1 import tether_pb2 as pb

CATEGORY, STRING_LIST = "category", "list<string>"


@dataclass(frozen=True)
class Delivery:
    masks: Mapping[str, str]  # text column -> the bool column saying which rows hold a value
    hidden: frozenset[str]  # mask columns the request did not ask for
    string_lists: frozenset[str]
    categories: Mapping[str, list[str]]

    @classmethod
    def of(cls, plan: pb.StreamPlan, spec: StreamSpec) -> Delivery:
        columns = {c.name: c for c in plan.columns}
        masks = {c.valid_of: c.name for c in plan.columns if c.valid_of in columns}
        asked = {c.valid_of for c in plan.columns if c.valid_of and (
            spec.null_masks_all or c.valid_of in spec.null_masks)}
        filled = {name for name, _ in spec.fill_null}  # their gaps hold the fill, not None
        return cls(
            masks={name: mask for name, mask in masks.items()
                   if columns[name].kind and name not in filled},
            hidden=frozenset(mask for name, mask in masks.items() if name not in asked),
            string_lists=frozenset(c.name for c in plan.columns if c.logical == STRING_LIST),
            categories={c.name: list(c.categories) for c in plan.columns
                        if c.logical == CATEGORY})

    def finish(self, batch: dict[str, Any]) -> dict[str, Any]:
        """`batch` (ragged columns already object arrays) as delivered."""
        if not (self.masks or self.hidden or self.string_lists):
            return batch
        out = {}
        for name, values in batch.items():
            if name in self.hidden:
                continue
            if name in self.string_lists:
                values = _from_json(values)
            mask = self.masks.get(name)
            if mask is not None and mask in batch and isinstance(values, np.ndarray) \
                    and values.dtype == object:
                values = values.copy() if name not in self.string_lists else values
                values[~batch[mask]] = None
            out[name] = values
        return out


def _from_json(values: np.ndarray) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for row, text in enumerate(values):  # (a slice assignment would nest the lists)
        out[row] = json.loads(text) if text else []
    return out
