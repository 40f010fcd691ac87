"""The stream request is declared once (tether.wire.spec): every OpenStream
field belongs to StreamSpec or Connection, round-trips the wire, and an
unset field takes the one default declared there."""

from __future__ import annotations

from dataclasses import fields

import pytest

from tether.wire.errors import RequestError
from tether.wire.plan import Cursor, Layout, Position
from tether.wire.spec import Connection, StreamSpec
from tether.wire.v1 import tether_pb2 as pb

NOT_DEFAULT = StreamSpec(
    dataset="train", batch_size=7, columns=("x", "y"), shuffle=True, seed=2**64 - 1,
    shuffle_window_bytes=123, num_epochs=None, process_index=1, process_count=3,
    drop_last=True, shard_bytes=1 << 16, codec="zstd", start=Position(4, 21),
    image_size=(32, 48), decode="daemon", on_bad_image="error", filter="x > 1", sql="SELECT 1",
    fill_null=(("a", -1), ("b", 0.5), ("c", True), ("d", "2024-01-31")), null_masks=("a", "z"),
    null_masks_all=True, categories=("city",), images=("photo",))
CONNECTION = Connection(
    resume=Cursor(4, 2), initial_credits=2**64 - 1, accept_codecs=("none", "zstd"),
    accept_checksums=("crc32c",), fingerprint="abc", shard_rows=99,
    parts=(Layout((10, 20), 0), Layout((5,), 5)), part_index=1, decode_threads=3,
    no_narrowing=True)


def _names(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


def test_every_wire_field_is_declared_once() -> None:
    wire = set(pb.OpenStream.DESCRIPTOR.fields_by_name)
    assert _names(StreamSpec) | _names(Connection) == wire
    assert not _names(StreamSpec) & _names(Connection)


def test_values_that_are_not_the_defaults_round_trip() -> None:
    message = pb.OpenStream.FromString(NOT_DEFAULT.to_proto(CONNECTION).SerializeToString())
    assert StreamSpec.from_proto(message) == NOT_DEFAULT
    assert Connection.from_proto(message) == CONNECTION
    for value in (NOT_DEFAULT, CONNECTION):  # the test above really is off every default
        differs = [f.name for f in fields(value) if getattr(value, f.name) != f.default]
        assert len(differs) >= len(fields(value)) - 2, differs  # (on_bad_image, wants)


def test_unset_fields_take_the_declared_defaults() -> None:
    message = pb.OpenStream(dataset="train", batch_size=5)
    # num_epochs is the one field whose zero means something: forever
    assert StreamSpec.from_proto(message) == StreamSpec("train", 5, num_epochs=None)
    assert Connection.from_proto(message) == Connection()
    assert StreamSpec.from_proto(message).codec == "auto"  # "" on the wire


def test_one_epoch_and_forever_both_survive_the_wire() -> None:
    for epochs, on_wire in ((None, 0), (1, 1)):
        message = StreamSpec("train", 5, num_epochs=epochs).to_proto()
        assert message.num_epochs == on_wire
        assert StreamSpec.from_proto(message).num_epochs == epochs


def test_the_filter_is_parsed_once_and_kept_normalised() -> None:
    spec = StreamSpec("train", 5, filter="x>1  and y == 'a'")
    assert spec.filter == spec.expression.text == "x > 1 and y == 'a'"
    assert spec.starting_at(Position(1, 0)).expression is spec.expression  # not re-parsed
    assert StreamSpec("train", 5).expression is None


@pytest.mark.parametrize(("connection", "message"), [
    (dict(parts=(Layout((10,), 0),), part_index=1), "part_index 1 names none of the 1 parts"),
    (dict(part_index=2), "part_index 2 names none of the 0 parts"),
    (dict(wants=True, parts=(Layout((10,), 0),)), "cannot be cached"),
    (dict(resume=Cursor(2**63, 0)), "resume cursor's epoch must be between"),
    (dict(decode_threads=10**6), "decode_threads must be between 0 and 1024"),
    (dict(accept_codecs=("zstd",) * 33), "more than 32"),
    (dict(shard_rows=-1), "shard_rows must be between"),
])
def test_a_connection_is_checked_where_it_is_declared(connection: dict, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        Connection(**connection)


@pytest.mark.parametrize(("request_fields", "message"), [
    (dict(batch_size=None), "pass batch_size=..."),
    (dict(batch_size=0), "batch_size must be between 1 and"),
    (dict(shard_bytes=1023), "shard_bytes must be between 1024 and"),
    (dict(process_index=3, process_count=3), "process_index < process_count"),
    (dict(filter="x >"), "filter"),
    (dict(fill_null=(("a", None),)), "fill_null maps column names to"),
    (dict(fill_null=(("a", 1), ("a", 2))), "fill_null names a column twice"),
    (dict(fill_null=(("a", 2**63),)), "fill_null's integers fit 64 bits"),
    (dict(start=(0, -1)), "start position's row must be between"),
])
def test_a_request_is_checked_where_it_is_declared(request_fields: dict, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        StreamSpec(**{"dataset": "train", "batch_size": 4, **request_fields})


def test_a_saved_state_is_plain_json_equal_after_a_round_trip() -> None:
    import json

    state = NOT_DEFAULT.to_dict()
    assert json.loads(json.dumps(state)) == state
    assert StreamSpec.from_dict(state) == NOT_DEFAULT
