"""The last stage: what a batch's columns of varying length become.

    pad={"tokens": L}   -> tokens [B, L] and tokens_length [B]
    pack={"tokens": L}  -> rows of L tokens packed with whole sequences
                           (tether.sequences.packer.Packer), plus segment ids and positions
    neither             -> text and bytes as numpy object arrays of str / bytes;
                           token lists as object arrays of 1-D arrays

Packing changes what a batch is: the stream's batches become rounds of
sequences (ROUND_SEQUENCES at least), each packed on its own, and the
loader's batches are `batch_size` packed rows. A round is re-packed the same
way after a restart, so a saved state (the round's position, and how many of
its packed rows were handed out) resumes exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..wire.errors import RequestError
from ..wire.ragged import BINARY, IMAGE, RAGGED, UTF8, Ragged
from ..wire.spec import StreamSpec

# Sequences packed together: more fill rows better (tether.sequences.packing measures
# it), and a round is a batch of the stream, held in the prefetch window.
ROUND_SEQUENCES = 1024


def _lengths(name: str, given: Any) -> dict[str, int]:
    if given is None:
        return {}
    if not isinstance(given, Mapping) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 1
            for k, v in given.items()):
        raise RequestError(f"{name} maps column names to a length, e.g. {name}={{'tokens': 512}}; "
                           f"got {given!r:.80}")
    return dict(given)


@dataclass(frozen=True)
class SequenceOptions:
    pad: dict[str, int] = field(default_factory=dict)
    pack: tuple[str, int] | None = None
    pad_value: int = 0

    @classmethod
    def of(cls, pad: Any, pack: Any, pad_value: Any, spec: StreamSpec) -> SequenceOptions:
        padded, packed = _lengths("pad", pad), _lengths("pack", pack)
        if len(packed) > 1:
            raise RequestError(f"pack one column at a time, not {sorted(packed)}")
        both = sorted(set(padded) & set(packed))
        if both:
            raise RequestError(f"column {both[0]!r} is both padded and packed; choose one")
        if not isinstance(pad_value, int) or isinstance(pad_value, bool):
            raise RequestError(f"pad_value must be an integer, got {pad_value!r}")
        if packed and spec.process_count > 1 and spec.num_epochs is not None:
            raise RequestError(
                "pack= on several processes needs num_epochs=None (train by steps): each "
                "process packs its own sequences, so their packed batches per epoch differ")
        for name in [*padded, *packed]:
            if spec.columns and name not in spec.columns:
                raise RequestError(f"{name!r} is padded or packed but not among columns="
                                   f"{list(spec.columns)}")
        return cls(padded, next(iter(packed.items()), None), pad_value)

    def check_columns(self, kinds: Mapping[str, str], dtypes: Mapping[str, str]) -> None:
        """Refuse, at open, to pad or pack what is not a column of token lists, a
        pad_value the tokens' dtype cannot hold, or an output name taken."""
        named = [*self.pad, *([self.pack[0]] if self.pack else [])]
        for name in named:
            if name not in kinds:
                raise RequestError(f"pad/pack name {name!r}, which the stream does not carry; "
                                   f"its columns: {', '.join(kinds)}")
            if kinds[name] != RAGGED:
                what = {"": "a fixed-shape tensor", UTF8: "text", BINARY: "bytes",
                        IMAGE: "images"}.get(kinds[name], kinds[name])
                raise RequestError(f"column {name!r} is {what}: pad= and pack= take columns "
                                   "of token lists (Arrow list<int>)")
            dtype = np.dtype(dtypes[name])
            if np.array(self.pad_value).astype(dtype) != self.pad_value:
                raise RequestError(f"pad_value={self.pad_value} does not fit {name!r}'s "
                                   f"dtype {dtype}")
        added = [f"{name}_length" for name in self.pad]
        if self.pack:
            added += [f"{self.pack[0]}_segment_ids", f"{self.pack[0]}_positions"]
        taken = sorted(set(added) & set(kinds))
        if taken:
            raise RequestError(f"pad=/pack= add columns {taken}, which the dataset has already: "
                               "leave those out with columns=[...]")

    def round_size(self, batch_size: int) -> int:
        return max(batch_size, ROUND_SEQUENCES)


def finish_batch(batch: dict[str, Any], options: SequenceOptions,
                 counts: dict[str, int]) -> dict[str, Any]:
    """Pad what `pad` names; every other ragged column to an object array."""
    if options.pad:
        from .packing import pad_batch

        batch, truncated = pad_batch(batch, options.pad, options.pad_value)
        counts["sequences_truncated"] = counts.get("sequences_truncated", 0) + truncated
    return {name: column.to_numpy() if isinstance(column, Ragged) else column
            for name, column in batch.items()}


def check_for_jax(batch: Mapping[str, Any], kinds: Mapping[str, str]) -> None:
    """Refuse token lists that JAX cannot take as they are (text stays numpy)."""
    for name, column in batch.items():
        if kinds.get(name) == RAGGED and isinstance(column, np.ndarray) and \
                column.dtype == object:
            raise RequestError(
                f"column {name!r} holds sequences of varying length, which a jax.Array "
                f"cannot: pass pad={{{name!r}: L}} (rows cut or padded to L) or "
                f"pack={{{name!r}: L}} (sequences packed into rows of L) to the Loader")
