"""The GPU side's part of tests/e2e/test_simulated_systems.py, run under a
simulated system (sitecustomize.py beside it): a caching loader reads every
epoch, results go home as a file and as a folder, a shared file comes back.

    python sim_client.py URL WORK_DIR LOADER_OPTIONS_JSON
    (writes WORK_DIR/report.json and batches.npz)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

import tether


def main(url: str, work: Path, options: dict) -> None:
    report = {"platform": sys.platform, "fallocate": hasattr(os, "posix_fallocate"),
              "getuid": hasattr(os, "getuid")}
    with tether.Loader(url, cache=work / "cache", **options) as loader:
        batches = [{name: np.asarray(column) for name, column in batch.items()}
                   for batch in loader]
        report["stats"] = {k: v for k, v in loader.stats().items() if k.startswith("cache_")}
    np.savez(work / "batches.npz", **{f"{i}/{name}": column for i, batch in enumerate(batches)
                                      for name, column in batch.items()})
    report["batches"] = len(batches)
    with tether.connect(url) as client:
        client.upload("run/metrics.json", b'{"loss": 0.25}')
        client.upload("run/ckpt", work / "ckpt")
        client.download("models/w.bin", work / "w.bin")
        try:
            client.upload("Models/w.bin", b"not into the share")
        except tether.RequestError as exc:
            report["share_by_case"] = str(exc)
    (work / "report.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3]))
