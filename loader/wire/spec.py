"""What a stream asks for, declared once: two frozen, validated values.

`StreamSpec` is the request: which rows, in what order, cut how, travelling
how. The Loader builds one, its saved state carries one, and the daemon's
servicer rebuilds one from the wire. `Connection` is what one connection of
that stream adds (the codecs this client decodes, where to resume, the parts
of a dataset split over daemons, ...): it is sent afresh on every reconnect
and never saved.

Both map onto the one OpenStream message, field by field by name. Each
field's default is declared here and nowhere else: a field the client left
at the proto's zero value (unset) takes it. The few fields whose wire form
differs say how in `_WIRE`. The same checks run on both sides because they
are the same code.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Sequence
from dataclasses import MISSING, Field, asdict, dataclass, field, fields, replace
from typing import Any

from . import rpc
from .codecs import check_requested
from .errors import RequestError, require
from .plan import MAX_ROWS, Cursor, HostPlan, Layout, Position
from .v1 import tether_pb2 as pb

# Bounds on what a request (or a saved state) may say. Epochs and counts stay
# below 2**63 so that every cursor after them still fits the wire's uint64.
MAX_COUNT = (1 << 63) - 1
MAX_SEED = (1 << 64) - 1
DECODE_PLACES = ("auto", "loader", "daemon")
BAD_IMAGE_CHOICES = ("error", "skip")
MAX_SQL = 100_000  # characters of a remote query
MAX_IMAGE_SIDE = 1 << 14
MAX_PARTS = 1024  # daemons one dataset may be split over
MAX_NAMES = 32  # codecs or checksums a client may list
MAX_DECODE_THREADS = 1024
FillValue = bool | int | float | str
FILL_TYPES = (bool, int, float, str)


def layout_to_proto(layout: Layout) -> pb.Layout:
    return pb.Layout(chunk_rows=layout.chunk_rows, window_rows=layout.window_rows)


def layout_from_proto(message: pb.Layout) -> Layout:
    require(len(message.chunk_rows) > 0 and all(message.chunk_rows),
            "a layout needs at least one chunk, and no empty one")
    return Layout(tuple(message.chunk_rows), message.window_rows)


def _integer(name: str, value: Any, low: int, high: int) -> int:
    """`value` as an int in [low, high]; bools, floats and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise RequestError(f"{name} must be an integer, got {value!r:.80}")
    value = int(value)
    require(low <= value <= high, f"{name} must be between {low} and {high}, got {value}")
    return value


def _flag(name: str, value: Any) -> bool:
    require(isinstance(value, bool), f"{name} must be True or False, got {value!r:.80}")
    return value


def _names(name: str, value: Any, most: int = MAX_NAMES) -> tuple[str, ...]:
    require(isinstance(value, tuple | list) and all(isinstance(v, str) for v in value),
            f"{name} must be a list of names, got {value!r:.80}")
    require(len(value) <= most, f"{name} lists {len(value)} names, more than {most}")
    return tuple(value)


def _cursor(name: str, value: Any, kind: type) -> Any:
    require(isinstance(value, tuple) and len(value) == 2,
            f"{name} is ({', '.join(kind._fields)}), got {value!r:.80}")
    high = MAX_ROWS if kind is Position else MAX_COUNT
    return kind(_integer(f"{name}'s {kind._fields[0]}", value[0], 0, MAX_COUNT),
                _integer(f"{name}'s {kind._fields[1]}", value[1], 0, high))


@functools.lru_cache(maxsize=64)
def parse_filter(text: str) -> Any:
    """The filter's expression (tether.wire.filters), parsed once per text: a
    spec is rebuilt on every `replace`, and the daemon evaluates the tree."""
    from .filters import parse

    return parse(text)


def _set(value: Any, **checked: Any) -> None:
    for name, item in checked.items():
        object.__setattr__(value, name, item)


@dataclass(frozen=True)
class StreamSpec:
    """One stream's request: which rows, in what order, cut how.

    The row order depends on `dataset` (its version), `filter`, `sql`,
    `shuffle`, `seed` and `shuffle_window_bytes` only. `batch_size` and
    `process_count` decide how it is cut among processes; the rest decides
    how it travels.
    """

    dataset: str
    batch_size: int
    columns: tuple[str, ...] = ()
    shuffle: bool = False
    seed: int = 0
    shuffle_window_bytes: int = 0  # 0: the daemon's default
    num_epochs: int | None = 1  # None: forever
    process_index: int = 0
    process_count: int = 1
    drop_last: bool = False
    shard_bytes: int = rpc.DEFAULT_SHARD_BYTES
    codec: str = "auto"
    start: Position = field(default=Position(0, 0))
    # Images: decoded to uint8 [height, width, 3] (None: the files' bytes),
    # where ("auto", "loader", "daemon"), and what a corrupt one does.
    image_size: tuple[int, int] | None = None
    decode: str = "auto"
    on_bad_image: str = "error"
    max_image_pixels: int = 0  # an image's budget where the loader decodes; 0: 40 MP
    # Only the rows this expression selects (tether.wire.filters); "" all.
    filter: str = ""
    # A read-only query over the served datasets, its result the dataset
    # (the daemon must run with --allow-sql); "" none.
    sql: str = ""
    # What nulls become: (column, value) pairs, filled on the daemon; a bool
    # NAME_valid column beside these columns (or every nullable one); text
    # columns sent as codes into their vocabulary; binary columns of images.
    fill_null: tuple[tuple[str, FillValue], ...] = ()
    null_masks: tuple[str, ...] = ()
    null_masks_all: bool = False
    categories: tuple[str, ...] = ()
    images: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        require(isinstance(self.dataset, str) and bool(self.dataset),
                f"name a dataset: dataset=... (got {self.dataset!r:.80})")
        require(self.batch_size is not None, "pass batch_size=...")
        self._check_order()
        self._check_cut()
        self._check_travel()

    def _check_order(self) -> None:
        require(isinstance(self.filter, str), f"filter must be a string, got {self.filter!r:.80}")
        require(isinstance(self.sql, str) and len(self.sql) <= MAX_SQL,
                f"sql must be a string of at most {MAX_SQL} characters")
        _set(self, shuffle=_flag("shuffle", self.shuffle),
             seed=_integer("seed (a non-negative 64-bit integer)", self.seed, 0, MAX_SEED),
             shuffle_window_bytes=_integer("shuffle_window", self.shuffle_window_bytes, 0,
                                           MAX_SEED),
             # refused here with the position, before anything is opened
             filter=parse_filter(self.filter).text if self.filter else "")

    def _check_cut(self) -> None:
        _set(self, batch_size=_integer("batch_size", self.batch_size, 1, MAX_COUNT),
             num_epochs=None if self.num_epochs is None else
             _integer("num_epochs (None: forever)", self.num_epochs, 1, MAX_COUNT),
             process_count=_integer("process_count", self.process_count, 1, MAX_COUNT),
             process_index=_integer("process_index", self.process_index, 0, MAX_COUNT),
             drop_last=_flag("drop_last", self.drop_last),
             start=_cursor("a start position", self.start, Position))
        require(self.process_index < self.process_count,
                f"need 0 <= process_index < process_count, got {self.process_index} "
                f"of {self.process_count}")

    def _check_travel(self) -> None:
        columns = _names("columns", self.columns, most=MAX_COUNT)
        require(len(set(columns)) == len(columns), f"columns {list(columns)} name a column twice")
        require(isinstance(self.codec, str), f"codec must be a string, got {self.codec!r:.80}")
        check_requested(self.codec)
        require(self.decode in DECODE_PLACES,
                f"decode must be one of {', '.join(DECODE_PLACES)}, got {self.decode!r:.80}")
        _set(self, max_image_pixels=_integer("max_image_pixels", self.max_image_pixels, 0,
                                             MAX_SEED))
        require(self.on_bad_image in BAD_IMAGE_CHOICES,
                f"on_bad_image must be 'error' or 'skip', got {self.on_bad_image!r:.80}")
        require(self.on_bad_image == "error" or self.process_count == 1,
                "on_bad_image='skip' needs a single process: a skipped image would give the "
                "processes unequal batches; remove the corrupt files instead (tether ls names "
                "them on the first epoch)")
        _set(self, columns=columns, image_size=_image_size(self.image_size),
             shard_bytes=_integer("shard_bytes", self.shard_bytes, rpc.MIN_SHARD_BYTES,
                                  rpc.MAX_SHARD_BYTES))
        self._check_values()

    def _check_values(self) -> None:
        fills = self.fill_null
        require(isinstance(fills, tuple | list) and all(
            isinstance(pair, tuple | list) and len(pair) == 2 and isinstance(pair[0], str)
            and isinstance(pair[1], FILL_TYPES) for pair in fills),
            "fill_null maps column names to a number, a bool or a string (a date as ISO "
            f"text), e.g. fill_null={{'age': -1, 'city': ''}}; got {fills!r:.80}")
        names = [name for name, _ in fills]
        require(len(set(names)) == len(names), f"fill_null names a column twice: {names}")
        require(all(-(1 << 63) <= v < 1 << 63 for _, v in fills if isinstance(v, int)),
                "fill_null's integers fit 64 bits")
        _set(self, fill_null=tuple(sorted((name, value) for name, value in fills)),
             null_masks=tuple(sorted(set(_names("null_masks", self.null_masks, MAX_COUNT)))),
             null_masks_all=_flag("null_masks_all", self.null_masks_all),
             categories=tuple(sorted(set(_names("categories", self.categories, MAX_COUNT)))),
             images=tuple(sorted(set(_names("images", self.images, MAX_COUNT)))))

    @property
    def expression(self) -> Any:
        """The filter's parsed expression (tether.wire.filters.Expr); None without one."""
        return parse_filter(self.filter) if self.filter else None

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.process_count

    def starting_at(self, position: Position) -> StreamSpec:
        return replace(self, start=Position(*position))

    def host_plan(self, plan: pb.StreamPlan) -> HostPlan:
        """This request's plan as the daemon announced it: the loader's copy."""
        layout = layout_from_proto(plan.layout)
        require(plan.shard_rows >= 1, "the daemon's plan has shards of 0 rows")
        return self.plan_on(layout, plan.shard_rows)

    def plan_on(self, layout: Layout, shard_rows: int) -> HostPlan:
        """This request's plan over a dataset of `layout`, in shards of `shard_rows`."""
        return HostPlan(layout, self.shuffle, self.seed, self.batch_size, shard_rows,
                        self.process_index, self.process_count, self.drop_last, self.start,
                        self.num_epochs)

    # The wire.

    def to_proto(self, connection: Connection | None = None) -> pb.OpenStream:
        """The OpenStream message: this request, on `connection`."""
        return pb.OpenStream(**_to_wire(self), **_to_wire(connection or Connection()))

    @classmethod
    def from_proto(cls, request: pb.OpenStream) -> StreamSpec:
        """Validate what a client sent; a RequestError says what is wrong."""
        return cls(**_from_wire(cls, request))

    # A saved state.

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data: lists, not tuples, so that a JSON round trip is equal."""
        state = asdict(self)
        for name in ("columns", "null_masks", "categories", "images"):
            state[name] = list(state[name])
        state["fill_null"] = [list(pair) for pair in self.fill_null]
        state["start"] = self.start._asdict()
        state["image_size"] = list(self.image_size) if self.image_size else None
        return state

    @classmethod
    def from_dict(cls, state: Any, optional: Sequence[str] = ()) -> StreamSpec:
        """The request of a saved state, checked as strictly as one from the wire.

        Every field must be there, but `optional` ones (taking their defaults)."""
        require(isinstance(state, dict), f"the state's request is not a dict: {state!r:.80}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(state) - set(names), key=str)
        missing = [name for name in names if name not in state and name not in optional]
        require(not unknown, f"the state's request has unknown fields {unknown}")
        require(not missing, f"the state's request lacks {missing}")
        start = state.get("start", {"epoch": 0, "row": 0})
        require(isinstance(start, dict) and sorted(start, key=str) == ["epoch", "row"],
                f"the state's start must be {{'epoch': ..., 'row': ...}}, got {start!r:.80}")
        require(isinstance(state.get("columns", ()), list | tuple),
                f"the state's columns must be a list, got {state.get('columns')!r:.80}")
        return cls(**{**state, "start": Position(start["epoch"], start["row"])})


@dataclass(frozen=True)
class Connection:
    """What one connection of a stream adds to its StreamSpec."""

    resume: Cursor | None = None  # the next shard to send (a reconnect); None: the plan's first
    initial_credits: int = 0
    accept_codecs: tuple[str, ...] = ()  # the daemon never sends others
    accept_checksums: tuple[str, ...] = ()  # best first
    fingerprint: str = ""  # fail unless the dataset still has this version ("" any)
    shard_rows: int = 0  # a reconnect keeps every shard as it was (0: sized anew)
    # One dataset served by several daemons: every part's layout, in order,
    # and the part this daemon serves.
    parts: tuple[Layout, ...] = ()
    part_index: int = 0
    decode_threads: int = 0  # the loader's image decoders, for decode="auto"'s estimate
    wants: bool = False  # the loader caches rows: send only the shards it names (Want)
    no_narrowing: bool = False  # integers as they are, not in the narrowest lossless type

    def __post_init__(self) -> None:
        require(isinstance(self.parts, tuple | list) and len(self.parts) <= MAX_PARTS
                and all(isinstance(part, Layout) for part in self.parts),
                f"parts must be at most {MAX_PARTS} layouts")
        _set(self, resume=None if self.resume is None else
             _cursor("the resume cursor", self.resume, Cursor),
             # any count: the daemon clamps credits to the stream's window
             initial_credits=_integer("initial_credits", self.initial_credits, 0, MAX_SEED),
             accept_codecs=_names("accept_codecs", self.accept_codecs),
             accept_checksums=_names("accept_checksums", self.accept_checksums),
             shard_rows=_integer("shard_rows", self.shard_rows, 0, MAX_ROWS),
             parts=tuple(self.parts),
             decode_threads=_integer("decode_threads", self.decode_threads, 0,
                                     MAX_DECODE_THREADS),
             wants=_flag("wants", self.wants), no_narrowing=_flag("no_narrowing",
                                                                  self.no_narrowing))
        require(isinstance(self.fingerprint, str) and len(self.fingerprint) <= 1024,
                "a fingerprint is a short string")
        require(self.part_index < len(self.parts) if self.parts else self.part_index == 0,
                f"part_index {self.part_index} names none of the {len(self.parts)} parts")
        require(not (self.wants and self.parts),
                "a dataset split over several daemons cannot be cached by the loader "
                "(cache=...); serve it from one daemon")

    @classmethod
    def from_proto(cls, request: pb.OpenStream) -> Connection:
        return cls(**_from_wire(cls, request))


@dataclass(frozen=True)
class _Form:
    """A field's wire form, where it is not the field's own value."""

    send: Callable[[Any], Any]
    read: Callable[[Any], Any]
    zero_is_a_value: bool = False  # the wire's zero is not "unset" (num_epochs: forever)


_WIRE = {
    "num_epochs": _Form(lambda n: n or 0, lambda n: n or None, zero_is_a_value=True),
    "start": _Form(lambda p: pb.Position(epoch=p.epoch, row=p.row),
                   lambda m: Position(m.epoch, m.row)),
    "image_size": _Form(lambda size: size or (), lambda size: tuple(size) or None),
    "resume": _Form(lambda c: None if c is None else pb.Cursor(epoch=c.epoch, sequence=c.sequence),
                    lambda m: Cursor(m.epoch, m.sequence)),
    "parts": _Form(lambda layouts: [layout_to_proto(layout) for layout in layouts],
                   lambda messages: tuple(layout_from_proto(m) for m in messages)),
    "fill_null": _Form(lambda fills: [_fill_to_proto(name, value) for name, value in fills],
                       lambda messages: tuple(_fill_from_proto(m) for m in messages)),
}


def _fill_to_proto(column: str, value: FillValue) -> pb.FillNull:
    kind = ("bool_value" if isinstance(value, bool) else "int_value" if isinstance(value, int)
            else "float_value" if isinstance(value, float) else "text_value")
    return pb.FillNull(column=column, **{kind: value})


def _fill_from_proto(message: pb.FillNull) -> tuple[str, FillValue]:
    kind = message.WhichOneof("value")
    require(kind is not None, f"fill_null for {message.column!r} has no value")
    return message.column, getattr(message, kind)


def _to_wire(value: Any) -> dict[str, Any]:
    sent = {}
    for f in fields(value):
        item = getattr(value, f.name)
        item = _WIRE[f.name].send(item) if f.name in _WIRE else item
        if item is not None:
            sent[f.name] = item
    return sent


def _has_default(f: Field) -> bool:
    return f.default is not MISSING or f.default_factory is not MISSING


def _unset(message: Any, name: str) -> bool:
    descriptor = message.DESCRIPTOR.fields_by_name[name]
    if descriptor.message_type is not None and not _repeated(descriptor):
        return not message.HasField(name)
    return not getattr(message, name)


def _repeated(descriptor: Any) -> bool:
    if hasattr(descriptor, "is_repeated"):  # protobuf 6 and later: `label` is gone
        return descriptor.is_repeated
    return descriptor.label == descriptor.LABEL_REPEATED


def _from_wire(cls: type, message: Any) -> dict[str, Any]:
    """The fields of `cls` that `message` sets (an unset one takes its default)."""
    read = {}
    for f in fields(cls):
        form = _WIRE.get(f.name)
        if _unset(message, f.name) and _has_default(f) and not (form and form.zero_is_a_value):
            continue
        item = getattr(message, f.name)
        if form is not None:
            item = form.read(item)
        elif _repeated(message.DESCRIPTOR.fields_by_name[f.name]):
            item = tuple(item)
        read[f.name] = item
    return read


def _image_size(size: Any) -> tuple[int, int] | None:
    if size is None:
        return None
    require(isinstance(size, tuple | list) and len(size) == 2,
            f"image_size is (height, width), got {size!r:.80}")
    return (_integer("image height", size[0], 1, MAX_IMAGE_SIDE),
            _integer("image width", size[1], 1, MAX_IMAGE_SIDE))
