"""What a stream with `image_size` changes on the daemon's side.

Its image columns may travel as pixels, so shards are sized for pixels (a
decoded shard must fit the frame and the memory budget as well as the files
do), the plan announces the decoded shape, and the encoder gets a
DecodePlace that picks, shard by shard, which side decodes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace

from tether.wire.images.decode import max_pixels
from tether.wire.ragged import IMAGE
from tether.wire.spec import StreamSpec
from tether.wire.v1 import tether_pb2 as pb

from ..sources import Column
from .codec_policy import LinkMeter
from .decode_policy import DecodePlace
from .encoder import ImageDecoding


def sized_for_pixels(columns: Sequence[Column],
                     image_size: tuple[int, int] | None) -> list[Column]:
    """`columns`, image ones sized as the larger of their files and their pixels."""
    if image_size is None:
        return list(columns)
    pixels = image_size[0] * image_size[1] * 3
    return [replace(c, mean_row_bytes=max(c.mean_row_bytes, pixels)) if c.kind == IMAGE else c
            for c in columns]


def column_info(column: Column, image_size: tuple[int, int] | None) -> pb.ColumnInfo:
    """A column as a stream's plan announces it: an image one with the decoded
    shape when the loader asked for pixels."""
    info = column.to_proto(categories=True)
    if column.kind == IMAGE and image_size is not None:
        info.shape[:] = [*image_size, 3]
    return info


def image_decoding(spec: StreamSpec, columns: Sequence[Column], link: LinkMeter,
                   workers: int, local_peer: bool,
                   loader_threads: int = 0) -> ImageDecoding | None:
    """The encoder's image step, or None when the stream decodes nothing."""
    names = tuple(c.name for c in columns if c.kind == IMAGE)
    if spec.image_size is None or not names:
        return None
    shared = (os.cpu_count() or 1) if local_peer else None
    own = max_pixels()
    return ImageDecoding(names, spec.image_size, spec.on_bad_image == "skip",
                         DecodePlace(spec.decode, link, workers, shared, loader_threads),
                         min(spec.max_image_pixels or own, own))
