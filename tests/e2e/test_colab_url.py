"""On Colab the Loader and connect() read the URL from the notebook's secret."""

from __future__ import annotations

import tether


def test_loader_and_connect_read_the_secret(fake_colab, serve, npy_dataset):
    daemon = serve(npy_dataset(10))
    fake_colab({"TETHER_URL": daemon.url})
    with tether.connect() as client:
        assert [d.name for d in client.datasets()] == ["train"]
    with tether.Loader(dataset="train", batch_size=4) as loader:
        assert sum(len(b["id"]) for b in loader) == 10
