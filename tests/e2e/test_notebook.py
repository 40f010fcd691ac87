"""docs/colab.ipynb runs start to finish against a real daemon, as on Colab.

The kernel is this Python (tether installed already: TETHER_SKIP_INSTALL skips the
install cell); TETHER_URL and TETHER_DATASET point it at the daemon and dataset
made here. Colab's secrets cannot be had outside Colab: the environment variable
is the other way tether.connect() and tether.Loader() find the URL.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("jax")
pytest.importorskip("matplotlib")
nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

pytestmark = pytest.mark.jax

NOTEBOOK = Path(__file__).resolve().parents[2] / "docs" / "colab.ipynb"


def test_the_colab_notebook_trains_plots_checkpoints_and_uploads(serve, tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "regression"
    folder.mkdir(parents=True)
    x = rng.standard_normal((1024, 4)).astype(np.float32)
    y = (x @ np.array([1.5, -2.0, 0.5, 3.0], np.float32) + 0.25).astype(np.float32)
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", y)
    results = tmp_path / "results"
    daemon = serve(folder, args=("--results-dir", str(results)))

    work = tmp_path / "content"  # the notebook's working folder, as Colab's /content
    work.mkdir()
    for name, value in {"TETHER_URL": daemon.url, "TETHER_DATASET": "regression",
                        "TETHER_SKIP_INSTALL": "1", "JAX_PLATFORMS": "cpu",
                        "MPLBACKEND": "agg"}.items():
        monkeypatch.setenv(name, value)  # the kernel inherits this environment
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(work)}})
    client.execute()

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "regression: 1024 rows" in text
    # progress=True: tqdm.auto's widget where ipywidgets is installed, else its text bar
    bars = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in
            o.get("data", {}) or "epoch 19" in o.get("text", "")]
    assert bars, "progress=True showed no bar in the notebook"
    assert any("image/png" in o.get("data", {}) for o in outputs if "data" in o), "no plot shown"
    assert (work / "loss.png").stat().st_size > 1000

    (run,) = results.glob("colab-*")  # the notebook names the run by the time
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.json", "loss.png", "metrics.json"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 20 * (1024 // 64)
    assert metrics["last_loss"] < metrics["first_loss"] / 100  # it learned
    checkpoint = json.loads((run / "checkpoint.json").read_text())
    assert checkpoint["loader"] and len(checkpoint["params"]["w"]) == 4
    assert (run / "loss.png").read_bytes() == (work / "loss.png").read_bytes()
