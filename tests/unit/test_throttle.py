"""tether.sync's max_rate: a token bucket, on a fake clock."""

from __future__ import annotations

import pytest

from tether.results import Throttle


def test_the_throttle_lets_through_its_rate_and_no_more() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    throttle = Throttle(1000.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(10):
        throttle.take(500)  # 5,000 bytes: one second's burst, then 4 s at the rate
    assert now[0] == pytest.approx(4.0)
