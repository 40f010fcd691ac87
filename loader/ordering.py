"""Exactly-once check: shards must arrive as (epoch, sequence) in plan order.

The daemon's plan is deterministic and each epoch holds a known number of
shards for this process, so a gap, a repeat or a stream that ends early is
an error here, never a silently short or doubled epoch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .decoder import Shard
from .errors import ProtocolError


def in_plan_order(
    shards: Iterable[Shard],
    shards_per_epoch: int,
    start: tuple[int, int],
    num_epochs: int | None,
) -> Iterator[Shard]:
    """Yield `shards`, failing on any that is not the next one the plan expects."""
    epoch, sequence = start
    last_epoch = None if num_epochs is None else num_epochs - 1

    def normalize(epoch: int, sequence: int) -> tuple[int, int]:
        while shards_per_epoch and sequence >= shards_per_epoch:
            epoch, sequence = epoch + 1, sequence - shards_per_epoch
        return epoch, sequence

    epoch, sequence = normalize(epoch, sequence)
    for shard in shards:
        if (shard.epoch, shard.sequence) != (epoch, sequence):
            raise ProtocolError(
                f"expected shard {sequence} of epoch {epoch}, "
                f"got shard {shard.sequence} of epoch {shard.epoch}"
            )
        yield shard
        epoch, sequence = normalize(epoch, sequence + 1)
    finished = last_epoch is not None and (shards_per_epoch == 0 or epoch > last_epoch)
    if not finished:
        raise ProtocolError(
            f"stream ended early, before shard {sequence} of epoch {epoch}: the daemon "
            "closed it mid-plan; nothing after that point was delivered"
        )
