"""`to_jax(sharding=...)`: one global `jax.Array` per column, on one process and on two.

JAX reads XLA_FLAGS (the number of host devices) when it starts, and this
pytest process may already hold a JAX with one device, so each JAX part runs
in a fresh interpreter that writes what it saw under tmp_path; the test
compares that with plain numpy Loaders over the same real daemon.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import tether

pytestmark = pytest.mark.jax

PROCESS_TIMEOUT = 120.0  # seconds; a run takes a few

# One process, 8 host devices: batches of 64 rows, 8 on each device.
SINGLE = r"""
import json, sys
import numpy as np
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import tether
from tether.jax import device_iterator

url, out = sys.argv[1], sys.argv[2]
sharding = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), P("data"))
batches = tether.Loader(url, dataset="train", batch_size=64, shuffle=True, seed=0,
                        num_epochs=2).to_jax(sharding)
ids, xs, layouts, states = [], [], [], []
for batch in batches:
    layouts.append({name: {
        "type": type(a).__name__, "is_jax_array": isinstance(a, jax.Array),
        "shape": a.shape, "same_sharding": a.sharding == sharding,
        "shards": len(a.addressable_shards),
        "shard_shapes": sorted({s.data.shape for s in a.addressable_shards}),
    } for name, a in batch.items()})
    ids.append(np.asarray(batch["id"]))
    xs.append(np.asarray(batch["x"]))
    states.append(batches.state_dict())
try:
    next(device_iterator([{"id": np.arange(10)}], sharding))
    short = ""
except ValueError as exc:
    short = str(exc)
np.savez(out + "/arrays.npz", ids=np.stack(ids), x=np.stack(xs))
with open(out + "/meta.json", "w") as f:
    json.dump({"devices": jax.device_count(), "id_dtype": str(ids[0].dtype),
               "layouts": layouts, "states": states, "short": short}, f)
"""

# One of two jax.distributed processes on localhost, 2 host devices each.
DISTRIBUTED = r"""
import json, sys
import numpy as np
import jax

index, port, url, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                           process_id=index, initialization_timeout=60)
from jax.experimental.multihost_utils import process_allgather
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import tether
from tether.jax import DeviceIterator, process_layout

process_index, process_count = process_layout()
sharding = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), P("data"))
options = dict(dataset="train", batch_size=32, shuffle=True, seed=0, shard_bytes=4096)
try:  # rows loaded for another process are refused
    DeviceIterator(iter([]), sharding, layout=(0, 1))
    wrong_layout = ""
except ValueError as exc:
    wrong_layout = str(exc)
loader = tether.Loader(url, process_index=process_index, process_count=process_count, **options)
local_ids, local_x, positions, global_ids, shapes = [], [], [], [], []
for batch in loader.to_jax(sharding):
    shapes.append({name: a.shape for name, a in batch.items()})
    order = lambda a: sorted(a.addressable_shards, key=lambda s: s.index[0].start or 0)
    local_ids.append(np.concatenate([np.asarray(s.data) for s in order(batch["id"])]))
    local_x.append(np.concatenate([np.asarray(s.data) for s in order(batch["x"])]))
    rows = np.arange(batch["id"].shape[0])
    positions.append(np.concatenate([rows[s.index[0]] for s in order(batch["id"])]))
    global_ids.append(process_allgather(batch["id"], tiled=True))  # a collective over both
np.savez(f"{out}/arrays{index}.npz", local_ids=np.stack(local_ids), local_x=np.stack(local_x),
         positions=np.stack(positions), global_ids=np.stack(global_ids))
with open(f"{out}/meta{index}.json", "w") as f:
    json.dump({"layout": [process_index, process_count], "devices": jax.device_count(),
               "local_devices": jax.local_device_count(), "shapes": shapes,
               "wrong_layout": wrong_layout}, f)
"""


def run_python(scripts: list[tuple[str, list[str]]], tmp_path: Path, devices: int) -> list[str]:
    """Run `python -c script args` for each, at once, on `devices` CPU devices; their logs.

    When one fails the others are killed (a partner of jax.distributed would
    otherwise wait for it until its timeout); the assertion shows every log.
    """
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    logs = [tmp_path / f"python{i}.log" for i in range(len(scripts))]
    procs = []
    for (script, args), log in zip(scripts, logs, strict=True):
        with open(log, "w") as out:
            procs.append(subprocess.Popen([sys.executable, "-c", script, *args], env=env,
                                          stdout=out, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + PROCESS_TIMEOUT
    try:
        while (any(p.poll() is None for p in procs) and time.monotonic() < deadline
               and not any(p.poll() for p in procs)):
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    texts = [log.read_text() for log in logs]
    report = "\n".join(f"--- process {i}: exit {p.returncode}\n{text[-4000:]}"
                       for i, (p, text) in enumerate(zip(procs, texts, strict=True)))
    assert all(p.returncode == 0 for p in procs), f"a JAX process failed or hung:\n{report}"
    return texts


def numpy_batches(url: str, **options) -> tuple[list[dict[str, np.ndarray]], list[dict]]:
    """A plain loader's batches, and its state after each."""
    loader = tether.Loader(url, dataset="train", **options)
    batches, states = [], []
    for batch in loader:
        batches.append(batch)
        states.append(loader.state_dict())
    return batches, states


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_process_layout_is_none_until_jax_is_imported(tmp_path: Path) -> None:
    script = ("import sys; from tether.jax import process_layout\n"
              "assert process_layout() is None and 'jax' not in sys.modules\n"
              "import jax; print('layout', process_layout())")
    (log,) = run_python([(script, [])], tmp_path, devices=1)
    assert "layout (0, 1)" in log


def test_one_process_batches_are_global_arrays_over_eight_devices(serve, npy_dataset,
                                                                  tmp_path: Path) -> None:
    daemon = serve(npy_dataset(1024))
    run_python([(SINGLE, [daemon.url, str(tmp_path)])], tmp_path, devices=8)
    arrays = np.load(tmp_path / "arrays.npz")
    meta = json.loads((tmp_path / "meta.json").read_text())
    expected, expected_states = numpy_batches(daemon.url, batch_size=64, shuffle=True, seed=0,
                                              num_epochs=2)

    assert meta["devices"] == 8
    assert len(meta["layouts"]) == len(expected) == 32  # 16 steps an epoch, 2 epochs
    for layout, batch in zip(meta["layouts"], expected, strict=True):
        assert layout.keys() == batch.keys()
        for name, column in layout.items():
            rows = list(batch[name].shape[1:])
            assert column["is_jax_array"], column["type"]
            assert column["shape"] == [64, *rows]
            assert column["same_sharding"]
            assert column["shards"] == 8
            assert column["shard_shapes"] == [[8, *rows]]
    assert np.array_equal(arrays["ids"], np.stack([b["id"] for b in expected]))
    assert np.array_equal(arrays["x"], np.stack([b["x"] for b in expected]))
    for epoch in arrays["ids"].reshape(2, -1):  # every row exactly once an epoch
        assert np.array_equal(np.sort(epoch), np.arange(1024))
    assert meta["id_dtype"] == "int32"  # JAX's default 32-bit mode (see docs/jax.md)
    assert meta["states"] == expected_states  # the state of the batch last yielded
    assert "drop_last=True" in meta["short"]  # 10 rows cannot split over 8 devices


def test_two_jax_processes_each_feed_their_rows_into_one_global_batch(serve, npy_dataset,
                                                                      tmp_path: Path) -> None:
    # 92-byte rows and shard_bytes=4096: shards of 44 rows, cut to 32 (one
    # batch); 512 rows are 16 shards, 8 for each process, and 8 global
    # batches of 64: the same full steps on both processes under either plan,
    # every process's shard or every global batch's slice.
    daemon = serve(npy_dataset(512))
    port = str(free_port())
    run_python([(DISTRIBUTED, [str(i), port, daemon.url, str(tmp_path)]) for i in range(2)],
               tmp_path, devices=2)
    metas = [json.loads((tmp_path / f"meta{i}.json").read_text()) for i in range(2)]
    arrays = [np.load(tmp_path / f"arrays{i}.npz") for i in range(2)]

    assert [m["layout"] for m in metas] == [[0, 2], [1, 2]]
    assert [(m["devices"], m["local_devices"]) for m in metas] == [(4, 2), (4, 2)]
    assert all("process_index, process_count" in m["wrong_layout"] for m in metas)
    assert len(metas[0]["shapes"]) == len(metas[1]["shapes"]) == 8  # equal steps
    for m in metas:
        for shapes in m["shapes"]:
            assert shapes == {"id": [64], "x": [64, 8], "image": [64, 4, 4, 3], "label": [64]}

    for i, a in enumerate(arrays):  # each process's rows are what its own loader yields
        expected, _ = numpy_batches(daemon.url, batch_size=32, shuffle=True, seed=0,
                                    shard_bytes=4096, process_index=i, process_count=2)
        assert np.array_equal(a["local_ids"], np.stack([b["id"] for b in expected]))
        assert np.array_equal(a["local_x"], np.stack([b["x"] for b in expected]))
    assert np.array_equal(arrays[0]["global_ids"], arrays[1]["global_ids"])
    for step, global_ids in enumerate(arrays[0]["global_ids"]):
        local = [a["local_ids"][step] for a in arrays]
        assert not set(local[0]) & set(local[1])  # disjoint
        for a in arrays:  # and in the global batch where this process's devices hold them
            assert np.array_equal(global_ids[a["positions"][step]], a["local_ids"][step])
    assert np.array_equal(np.sort(arrays[0]["global_ids"].ravel()), np.arange(512))
