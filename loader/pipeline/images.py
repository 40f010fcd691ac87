"""The loader's image stage: images the daemon sent as files, decoded here.

It runs in the decoder's threads, on each shard after its tensors are
decoded, with the same function the daemon decodes with
(tether.wire.images), so pixels are the same whichever side decoded them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from ..wire.errors import ProtocolError
from ..wire.images.columns import decode_shard_images
from ..wire.ragged import IMAGE, UTF8, Ragged
from ..wire.spec import StreamSpec
from ..wire.v1 import tether_pb2 as pb
from .decoder import Shard


def image_step(plan: pb.StreamPlan, spec: StreamSpec) -> Callable[[Shard], Shard] | None:
    """Decoding of the plan's image columns, or None when none is to be decoded."""
    names = [c.name for c in plan.columns if c.kind == IMAGE]
    size = spec.image_size
    if not names or size is None:
        return None
    skip_bad = spec.on_bad_image == "skip"
    row_names = plan.row_name_column  # the column naming the files, when carried

    def decode(shard: Shard) -> Shard:
        paths = shard.columns.get(row_names) if row_names else None

        def name_of(row: int) -> str:
            if isinstance(paths, Ragged) and paths.kind == UTF8:
                return paths[row]
            return f"row {row} of shard {shard.sequence} of epoch {shard.epoch}"

        if shard.skipped and any(isinstance(shard.columns[n], Ragged) for n in names):
            raise ProtocolError(f"shard {shard.sequence} of epoch {shard.epoch} skips rows "
                                "yet leaves its images undecoded")
        columns, dropped, seconds, images = decode_shard_images(
            shard.columns, names, size, skip_bad, name_of, spec.max_image_pixels or None)
        return replace(shard, columns=columns, num_rows=shard.num_rows - len(dropped),
                       skipped=tuple(dropped.tolist()) or shard.skipped,
                       decode_seconds=seconds, images_decoded=images)

    return decode
