"""docs/colab_torch.ipynb runs start to finish against a real daemon, as on Colab:
pandas' first look, a PyTorch loop on a StatefulDataLoader, a checkpoint mid-epoch,
a resume that ends where the uninterrupted run ended, a plot, results home."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("torchdata")
pytest.importorskip("pandas")
pytest.importorskip("matplotlib")
pq = pytest.importorskip("pyarrow.parquet")
pa = pytest.importorskip("pyarrow")
nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[2] / "docs" / "colab_torch.ipynb"
ROWS = 1024


def test_the_torch_notebook_trains_checkpoints_resumes_and_uploads(serve, tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((ROWS, 4)).astype(np.float32)
    y = (x @ np.array([1.5, -2.0, 0.5, 3.0], np.float32) + 0.25).astype(np.float32)
    table = pa.table({**{f"x{i}": x[:, i] for i in range(4)}, "y": y})
    pq.write_table(table, tmp_path / "regression.parquet", row_group_size=256)
    results = tmp_path / "results"
    daemon = serve(tmp_path / "regression.parquet", args=("--results-dir", str(results)))

    work = tmp_path / "content"
    work.mkdir()
    for name, value in {"TETHER_URL": daemon.url, "TETHER_DATASET": "regression",
                        "TETHER_SKIP_INSTALL": "1", "MPLBACKEND": "agg"}.items():
        monkeypatch.setenv(name, value)  # the kernel inherits this environment
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(work)}})
    client.execute()

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert f"regression: {ROWS} rows" in text
    assert any("text/html" in o.get("data", {}) for o in outputs), "no DataFrame shown"
    assert any("image/png" in o.get("data", {}) for o in outputs), "no plot shown"

    (run,) = results.glob("colab-torch-*")
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "loss.png", "metrics.json"]
    metrics = json.loads((run / "metrics.json").read_text())
    per_epoch = ROWS // 64
    assert metrics["steps"] == 4 * per_epoch
    assert metrics["checkpoint_step"] == per_epoch + 9  # epoch 1, step 8, mid-epoch
    assert metrics["resumed_steps"] == metrics["steps"] - metrics["checkpoint_step"]
    assert metrics["last_loss"] < metrics["first_loss"] / 100  # it learned
    # the same batches in the same order after the resume: the same model at the end
    assert metrics["resumed_last_loss"] == pytest.approx(metrics["last_loss"], rel=1e-5)
