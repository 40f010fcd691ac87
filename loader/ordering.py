"""Exactly-once check: shards must arrive as (epoch, sequence) in plan order.

The daemon's plan is deterministic and each epoch holds a known number of
shards for this process, so a gap, a repeat or a stream that ends early is
an error here, never a silently short or doubled epoch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .decoder import Shard
from .wire.errors import ProtocolError
from .wire.position import Position, following, normalize


class PlanOrder:
    """Passes shards through while they come in plan order; `next` is the one due."""

    def __init__(self, shards: Iterable[Shard], shards_per_epoch: int, start: Position,
                 num_epochs: int | None) -> None:
        self._shards = shards
        self._per_epoch = shards_per_epoch
        self._num_epochs = num_epochs
        self.next = normalize(start, shards_per_epoch)

    def __iter__(self) -> Iterator[Shard]:
        for shard in self._shards:
            if (shard.epoch, shard.sequence) != self.next:
                raise ProtocolError(
                    f"expected shard {self.next[1]} of epoch {self.next[0]}, "
                    f"got shard {shard.sequence} of epoch {shard.epoch}"
                )
            self.next = following(self.next, self._per_epoch)
            yield shard
        finished = self._num_epochs is not None and (
            self._per_epoch == 0 or self.next[0] >= self._num_epochs)
        if not finished:
            raise ProtocolError(
                f"stream ended early, before shard {self.next[1]} of epoch {self.next[0]}: the "
                "daemon closed it mid-plan; nothing after that point was delivered"
            )
