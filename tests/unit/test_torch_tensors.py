"""How a batch's columns become torch tensors (tether.torch.as_tensor): one to
one where torch has the type, exact widening where it has it only in part, no
copy where the loader's memory may be written, a copy where it may not."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tether.torch import as_tensor  # noqa: E402
from tether.torch_dataset import HostArray, _for_torch  # noqa: E402


@pytest.mark.parametrize("dtype, expected", [
    (np.bool_, torch.bool), (np.uint8, torch.uint8), (np.int8, torch.int8),
    (np.int16, torch.int16), (np.int32, torch.int32), (np.int64, torch.int64),
    (np.float16, torch.float16), (np.float32, torch.float32), (np.float64, torch.float64),
    (np.uint16, torch.int32), (np.uint32, torch.int64), (np.uint64, torch.int64),
])
def test_every_wire_dtype_has_its_torch_dtype(dtype, expected) -> None:
    values = np.arange(6, dtype=dtype).reshape(2, 3) if dtype != np.bool_ \
        else np.array([[True, False, True]])
    tensor = as_tensor("c", values)
    assert tensor.dtype == expected
    assert tensor.tolist() == values.tolist()


def test_unsigned_values_at_the_top_of_their_range_widen_exactly() -> None:
    top16 = np.array([0, 65535], np.uint16)
    top32 = np.array([0, 2**32 - 1], np.uint32)
    fits64 = np.array([0, 2**63 - 1], np.uint64)
    assert as_tensor("a", top16).tolist() == [0, 65535]
    assert as_tensor("b", top32).tolist() == [0, 2**32 - 1]
    assert as_tensor("c", fits64).tolist() == [0, 2**63 - 1]


def test_a_uint64_past_int64_is_refused_naming_the_column() -> None:
    with pytest.raises(ValueError, match="column 'hash' is uint64 .* past int64"):
        as_tensor("hash", np.array([1, 2**63], np.uint64))


def test_writable_memory_is_shared_and_read_only_memory_is_copied() -> None:
    own = np.arange(8, dtype=np.float32)
    shared = as_tensor("x", own)
    assert shared.data_ptr() == own.ctypes.data
    frozen = np.frombuffer(np.arange(8, dtype=np.float32).tobytes(), np.float32)
    assert not frozen.flags.writeable
    copied = as_tensor("x", frozen)
    copied.add_(1)  # in place, as training code does: the loader's bytes are untouched
    assert frozen.tolist() == list(range(8))
    assert copied.tolist() == [v + 1 for v in range(8)]


def test_text_dates_and_token_lists_stay_numpy() -> None:
    text = np.array(["a", None], dtype=object)
    dates = np.array(["2024-01-01", "NaT"], dtype="datetime64[ns]")
    tokens = np.empty(2, dtype=object)
    tokens[:] = [np.arange(3), np.arange(1)]
    for column in (text, dates, tokens):
        assert as_tensor("c", column) is column


def test_a_dataloader_leaves_dates_as_numpy() -> None:
    from torch.utils.data._utils.collate import default_convert

    dates = np.array(["2024-01-01", "NaT"], dtype="datetime64[ns]")
    batch = _for_torch({"when": dates, "x": np.ones(2, np.float32)})
    converted = default_convert(batch)  # what DataLoader(batch_size=None) applies
    assert isinstance(converted["when"], HostArray)
    assert converted["when"].dtype == dates.dtype
    assert np.array_equal(converted["when"], dates, equal_nan=True)
    assert isinstance(converted["x"], torch.Tensor)
