"""Exactly-once check: shards must arrive as (epoch, sequence) in plan order.

The plan is deterministic and the loader holds its own copy (the shared
tether.wire.plan), so a gap, a repeat or a stream that ends early is an
error here, never a silently short or doubled epoch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..wire.errors import ProtocolError
from ..wire.plan import Cursor, HostPlan
from .decoder import Shard


class PlanOrder:
    """Passes shards through while they come in plan order; `next` is the one due."""

    def __init__(self, shards: Iterable[Shard], plan: HostPlan) -> None:
        self._shards = shards
        self._plan = plan
        self.next = plan.first()

    def __iter__(self) -> Iterator[Shard]:
        for shard in self._shards:
            if (shard.epoch, shard.sequence) != self.next:
                raise ProtocolError(
                    f"expected shard {self.next.sequence} of epoch {self.next.epoch}, "
                    f"got shard {shard.sequence} of epoch {shard.epoch}"
                )
            self.next = self._plan.following(Cursor(shard.epoch, shard.sequence))
            yield shard
        if not self._plan.finished(self.next):
            raise ProtocolError(
                f"stream ended early, before shard {self.next.sequence} of epoch "
                f"{self.next.epoch}: the daemon closed it mid-plan; nothing after that point "
                "was delivered"
            )
