"""A streamed int64 column past 32 bits fails loudly in to_jax() without x64."""

from __future__ import annotations

import numpy as np
import pytest

import tether

jax = pytest.importorskip("jax")
pytestmark = pytest.mark.jax


def test_a_loader_with_large_row_ids_fails_loudly_on_to_jax(x64_off, serve, tmp_path):
    folder = tmp_path / "data" / "big"
    folder.mkdir(parents=True)
    np.save(folder / "id.npy", np.arange(2**31 - 2, 2**31 + 6, dtype=np.int64))
    daemon = serve(folder)
    # Placed ahead of use: the error comes as soon as the batch is put on device.
    with (tether.Loader(daemon.url, dataset="big", batch_size=2) as loader,
          pytest.raises(ValueError, match="'id' is int64 with values from 2147483648")):
        list(loader.to_jax(buffer_size=1))
