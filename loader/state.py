"""The loader's checkpointable state: the request, starting where the run is.

A state is the stream request (tether.wire.spec) whose `start` is the
global position of the next batch, plus the dataset's version. The position
is the same on every process of a run, so a state saved by N processes
resumes on M: only the fields that decide the row order must agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .wire.errors import RequestError
from .wire.spec import StreamSpec

VERSION = 2

# Fields that decide the row order: a restored loader must agree on them.
# batch_size, process_count and process_index may change (elastic resume).
ORDER_FIELDS = ("dataset", "shuffle", "seed", "shuffle_window_bytes", "filter", "sql")


_PER_PROCESS = ("process_index", "process_count")
# Fields a state may lack: the per-process ones, and those added since version 2 began.
_OPTIONAL = (*_PER_PROCESS, "image_size", "decode", "on_bad_image", "max_image_pixels",
             "filter", "sql",
             "fill_null", "null_masks", "null_masks_all", "categories", "images")


@dataclass(frozen=True)
class LoaderState:
    spec: StreamSpec
    fingerprint: str
    # With pack=: how the rounds were packed, and the packed rows of the round
    # at spec.start already handed out (tether.sequences.packer): {"column", "length",
    # "round_rows", "rows"}. A resume must pack the same way to skip the same rows.
    packing: dict[str, Any] | None = None

    @property
    def packed_rows(self) -> int:
        return self.packing["rows"] if self.packing else 0

    def to_dict(self) -> dict[str, Any]:
        """The same dict on every process of a run: which process saved it is
        not part of it (the restoring loader brings its own)."""
        request = {k: v for k, v in self.spec.to_dict().items() if k not in _PER_PROCESS}
        state = {"version": VERSION, "request": request, "fingerprint": self.fingerprint}
        if self.packing:
            state["packing"] = dict(self.packing)
        return state

    @classmethod
    def from_dict(cls, state: Any) -> LoaderState:
        """A state from `to_dict`, checked field by field: a forged or damaged one
        is a RequestError that says what is wrong, never a stream of other rows."""
        if not isinstance(state, dict):
            raise RequestError(f"a loader state is a dict from loader.state_dict(), not "
                               f"{type(state).__name__}")
        version = state.get("version")
        if type(version) is not int or version != VERSION:
            raise RequestError(f"loader state version {version!r} is not {VERSION}; was it made "
                               "by loader.state_dict() of this Tether version?")
        missing = [key for key in ("request", "fingerprint") if key not in state]
        if missing:
            raise RequestError(f"malformed loader state: it lacks {missing}")
        if not isinstance(state["fingerprint"], str):
            raise RequestError(f"malformed loader state: fingerprint {state['fingerprint']!r:.80} "
                               "is not a string")
        try:
            spec = StreamSpec.from_dict(state["request"], optional=_OPTIONAL)
        except RequestError as exc:
            raise RequestError(f"malformed loader state: {exc}") from None
        return cls(spec, state["fingerprint"], _packing(state.get("packing")))

    def check_packing_matches(self, packing: dict[str, Any] | None) -> None:
        """Refuse to resume mid-round with rounds packed another way: the rows
        to skip would be other rows (a state saved at a round's start is fine)."""
        if not self.packed_rows:
            return
        mine = {k: v for k, v in (self.packing or {}).items() if k != "rows"}
        theirs = {k: v for k, v in (packing or {}).items() if k != "rows"}
        if mine != theirs:
            raise RequestError(
                f"this state was saved mid-way through a round packed as {mine}; this loader "
                f"packs {theirs or 'nothing'}: pass the same pack= and batch_size")


    def check_order_matches(self, spec: StreamSpec) -> None:
        """Refuse to resume a loader whose request would order the rows otherwise."""
        differ = [f"{name}: state has {getattr(self.spec, name)!r}, loader "
                  f"{getattr(spec, name)!r}"
                  for name in ORDER_FIELDS if getattr(self.spec, name) != getattr(spec, name)]
        if differ:
            raise RequestError("this state belongs to another stream; " + "; ".join(differ))


def _packing(packing: Any) -> dict[str, Any] | None:
    if packing is None:
        return None
    ok = isinstance(packing, dict) and sorted(packing) == ["column", "length", "round_rows",
                                                             "rows"] \
        and isinstance(packing["column"], str) \
        and all(type(packing[k]) is int and packing[k] >= 0
                for k in ("length", "round_rows", "rows"))
    if not ok:
        raise RequestError(f"malformed loader state: packing {packing!r:.120}")
    return dict(packing)
