"""The daemon's side of a caching loader's stream: which shards, which rows."""

from __future__ import annotations

import numpy as np
import pytest

from tether.daemon.stream.wanted import WantedShards
from tether.wire.errors import RequestError
from tether.wire.plan import Cursor, HostPlan, Layout
from tether.wire.v1 import tether_pb2 as pb

PLAN = HostPlan(Layout.random_access(100), batch_size=10, shuffle=True, seed=3,
                shard_rows=10, num_epochs=2)


def wanted() -> WantedShards:
    return WantedShards(PLAN, PLAN.first(), PLAN.shard)


def want(epoch: int, sequence: int, have: list[bool]) -> pb.Want:
    packed = np.packbits(np.array(have, dtype=bool), bitorder="little").tobytes()
    return pb.Want(epoch=epoch, sequence=sequence, have=packed)


def test_unwanted_shards_are_skipped_and_had_rows_left_out() -> None:
    shards = wanted()
    assert shards.next_task() is None  # nothing named yet: nothing to send
    have = [True, False] * 5
    shards.add(want(0, 3, have))
    shards.add(want(1, 0, [False] * 10))
    task = shards.next_task()
    assert task.cursor == Cursor(0, 3)
    np.testing.assert_array_equal(task.rows, PLAN.shard(Cursor(0, 3))[1::2])
    task = shards.next_task()
    assert task.cursor == Cursor(1, 0)
    np.testing.assert_array_equal(task.rows, PLAN.shard(Cursor(1, 0)))


@pytest.mark.parametrize("wants, error", [
    ([(0, 2, [False] * 10), (0, 1, [False] * 10)], "out of the plan's order"),
    ([(0, 1, [False] * 10), (0, 1, [False] * 10)], "out of the plan's order"),
])
def test_wants_out_of_order_are_refused(wants, error) -> None:
    shards = wanted()
    shards.add(want(*wants[0]))
    with pytest.raises(RequestError, match=error):
        shards.add(want(*wants[1]))


@pytest.mark.parametrize("named, error", [
    (pb.Want(epoch=0, sequence=0, have=b"\0"), "mask has 1 bytes"),
    (pb.Want(epoch=0, sequence=0, have=b"\0" * 4096), "mask has 4096 bytes"),
    (want(5, 0, [False] * 10), "the plan has no such shard"),
    (want(0, 10, [False] * 10), "the plan has no such shard"),
    (want(10**9, 0, [False] * 10), "the plan has no such shard"),
])
def test_a_want_that_makes_no_sense_is_refused_when_it_arrives(named, error) -> None:
    with pytest.raises(RequestError, match=error):
        wanted().add(named)


def test_a_want_for_rows_all_had_is_refused() -> None:
    shards = wanted()
    shards.add(want(0, 0, [True] * 10))
    with pytest.raises(RequestError, match="every row had already"):
        shards.next_task()


def test_an_endless_plan_checks_a_far_want_by_arithmetic() -> None:
    endless = HostPlan(Layout.random_access(100), batch_size=10, shuffle=True, seed=3,
                       shard_rows=10, num_epochs=None)
    shards = WantedShards(endless, endless.first(), endless.shard)
    shards.add(want(10**12, 9, [False] * 10))  # a real shard, far ahead: no walk to it
    task = shards.next_task()
    assert task.cursor == Cursor(10**12, 9) and task.last_in_epoch
    np.testing.assert_array_equal(task.rows, endless.shard(Cursor(10**12, 9)))
