"""JAX's 32-bit mode narrows 64-bit integers on device: in range they pass, beyond they fail."""

from __future__ import annotations

import numpy as np
import pytest

import tether
import tether.jax

jax = pytest.importorskip("jax")
pytestmark = pytest.mark.jax




def test_int64_inside_the_int32_range_is_narrowed_as_jax_does(x64_off):
    ids = np.array([-(2**31), 0, 2**31 - 1], dtype=np.int64)
    (batch,) = tether.jax.device_iterator([{"id": ids}])
    assert batch["id"].dtype == np.int32
    np.testing.assert_array_equal(np.asarray(batch["id"]), ids)


def test_int64_outside_the_int32_range_is_refused_with_the_fix(x64_off):
    batches = [{"x": np.zeros(2, np.float32), "id": np.array([0, 2**31 + 5], np.int64)}]
    with pytest.raises(ValueError) as caught:
        list(tether.jax.device_iterator(batches))
    message = str(caught.value)
    assert "'id'" in message and "2147483653" in message and "2147483647" in message
    assert 'jax.config.update("jax_enable_x64", True)' in message


def test_negative_int64_below_the_int32_range_is_refused(x64_off):
    with pytest.raises(ValueError, match="'id'"):
        list(tether.jax.device_iterator([{"id": np.array([-(2**31) - 1], np.int64)}]))


def test_uint64_beyond_uint32_is_refused_and_inside_kept(x64_off):
    (batch,) = tether.jax.device_iterator([{"h": np.array([0, 2**32 - 1], np.uint64)}])
    np.testing.assert_array_equal(np.asarray(batch["h"]), [0, 2**32 - 1])
    with pytest.raises(ValueError, match="'h' is uint64"):
        list(tether.jax.device_iterator([{"h": np.array([2**32], np.uint64)}]))


def test_nested_columns_are_named_by_their_path(x64_off):
    with pytest.raises(ValueError, match=r"\['meta'\]\['id'\]"):
        list(tether.jax.device_iterator([{"meta": {"id": np.array([2**40], np.int64)}}]))


def test_64_bit_mode_keeps_the_values_whole():
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        ids = np.array([2**31 + 5, 2**40], dtype=np.int64)
        (batch,) = tether.jax.device_iterator([{"id": ids}])
        assert batch["id"].dtype == np.int64
        np.testing.assert_array_equal(np.asarray(batch["id"]), ids)
    finally:
        jax.config.update("jax_enable_x64", before)


