"""What the loader makes of the daemon's typed columns (tether.columns.Delivery)."""

from __future__ import annotations

import numpy as np

from tether.columns import Delivery
from tether.wire.spec import StreamSpec
from tether.wire.v1 import tether_pb2 as pb

PLAN = pb.StreamPlan(columns=[
    pb.ColumnInfo(name="city", dtype="|u1", kind="utf8"),
    pb.ColumnInfo(name="city_valid", dtype="|b1", valid_of="city"),
    pb.ColumnInfo(name="tags", dtype="|u1", kind="utf8", logical="list<string>"),
    pb.ColumnInfo(name="tags_valid", dtype="|b1", valid_of="tags"),
    pb.ColumnInfo(name="plan", dtype="<i4", logical="category", categories=["a", "b"])])


def _batch() -> dict[str, np.ndarray]:
    return {"city": np.array(["Oslo", "unknown"], dtype=object),
            "city_valid": np.array([True, False]),
            "tags": np.array(['["x", "y"]', ""], dtype=object),
            "tags_valid": np.array([True, False]), "plan": np.array([1, -1], np.int32)}


def test_text_gaps_are_none_and_masks_not_asked_for_are_dropped() -> None:
    delivered = Delivery.of(PLAN, StreamSpec("t", 2)).finish(_batch())
    assert sorted(delivered) == ["city", "plan", "tags"]
    assert delivered["city"].tolist() == ["Oslo", None]
    assert delivered["tags"].tolist() == [["x", "y"], None]
    assert Delivery.of(PLAN, StreamSpec("t", 2)).categories == {"plan": ["a", "b"]}


def test_a_filled_text_column_keeps_its_fill_beside_the_mask_asked_for() -> None:
    """Was None: the loader read the mask over the daemon's fill."""
    spec = StreamSpec("t", 2, fill_null=(("city", "unknown"),), null_masks=("city",))
    delivered = Delivery.of(PLAN, spec).finish(_batch())
    assert delivered["city"].tolist() == ["Oslo", "unknown"]
    assert delivered["city_valid"].tolist() == [True, False]
