"""The loader's checkpointable state: the request that fixes the plan, and a position in it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from .wire.errors import RequestError

VERSION = 1

# Fields that decide the plan or the batches: a restored loader must agree on them.
_MUST_MATCH = ("dataset", "columns", "batch_size", "shuffle", "seed", "process_index",
               "process_count", "drop_last")


class Position(NamedTuple):
    """The next row to hand out: row `row` of shard `sequence` of epoch `epoch`."""

    epoch: int
    sequence: int
    row: int


@dataclass
class LoaderState:
    dataset: str
    fingerprint: str
    columns: list[str] | None
    batch_size: int
    shuffle: bool
    seed: int | None
    num_epochs: int | None
    process_index: int
    process_count: int
    drop_last: bool
    shard_rows: int
    position: Position

    def to_dict(self) -> dict[str, Any]:
        state = asdict(self)
        state["position"] = self.position._asdict()
        return {"version": VERSION, **state}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> LoaderState:
        if state.get("version") != VERSION:
            raise RequestError(f"loader state version {state.get('version')!r} is not "
                               f"{VERSION}; was it made by loader.state_dict()?")
        fields = {k: v for k, v in state.items() if k != "version"}
        try:
            fields["position"] = Position(**fields["position"])
            return cls(**fields)
        except (KeyError, TypeError) as exc:
            raise RequestError(f"malformed loader state: {exc}") from None

    def check_matches(self, loader: Any) -> None:
        """Refuse to resume a loader whose request would plan another stream."""
        differ = [f"{name}: state has {getattr(self, name)!r}, loader {getattr(loader, name)!r}"
                  for name in _MUST_MATCH if getattr(self, name) != getattr(loader, name)]
        if differ:
            raise RequestError("this state belongs to another stream; " + "; ".join(differ))
