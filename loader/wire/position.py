"""Positions in a stream's plan: (epoch, sequence of the shard in that epoch)."""

from __future__ import annotations

Position = tuple[int, int]


def normalize(position: Position, shards_per_epoch: int) -> Position:
    """Carry a sequence past the end of its epoch into the next epochs."""
    epoch, sequence = position
    if shards_per_epoch:
        epoch, sequence = epoch + sequence // shards_per_epoch, sequence % shards_per_epoch
    return epoch, sequence


def following(position: Position, shards_per_epoch: int) -> Position:
    return normalize((position[0], position[1] + 1), shards_per_epoch)
