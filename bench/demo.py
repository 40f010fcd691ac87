"""`tether demo`: the whole path on one machine, in a few seconds.

Writes a synthetic Parquet dataset, serves it with a real `tether serve`
subprocess on loopback, and trains a small JAX classifier streaming from
it, printing throughput and the share of steps that waited on data.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tether.daemon import posix
from tether.daemon.spawn import DaemonProcess

# A step "waited on data" when fetching its batch blocked longer than this.
WAIT_THRESHOLD_S = 1e-3


def write_dataset(folder: Path, rows: int, features: int, classes: int) -> None:
    """Inputs and the labels a fixed random linear teacher gives them, as Parquet parts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    teacher = rng.standard_normal((features, classes)).astype(np.float32)
    part_rows = 25_000
    for part, start in enumerate(range(0, rows, part_rows)):
        x = rng.standard_normal((min(part_rows, rows - start), features), dtype=np.float32)
        label = (x @ teacher).argmax(axis=1).astype(np.int64)
        table = pa.table({
            "x": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), features),
            "label": label,
        })
        pq.write_table(table, folder / f"part-{part:03d}.parquet", row_group_size=8192)


def train(url: str, seconds: float, batch_size: int, features: int, classes: int) -> None:
    import jax
    import jax.numpy as jnp

    import tether

    def loss_fn(params, x, label):
        logits = x @ params["w"] + params["b"]
        loss = -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(label.shape[0]), label])
        return loss, jnp.mean(logits.argmax(axis=1) == label)

    @jax.jit
    def step(params, batch):
        (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, batch["x"], batch["label"])
        params = jax.tree_util.tree_map(lambda p, g: p - 0.05 * g, params, grads)
        return params, loss, accuracy

    params = {"w": jnp.zeros((features, classes)), "b": jnp.zeros(classes)}
    loader = tether.Loader(url, dataset="train", batch_size=batch_size, shuffle=True, seed=0,
                           num_epochs=None, drop_last=True)
    batches = loader.to_jax(buffer_size=2)
    params, _, _ = step(params, next(batches))  # compile before timing
    row_bytes = 4 * features + 8
    steps = waited = 0
    wait_time = 0.0
    start = last_report = time.perf_counter()
    print(f"training a {features}x{classes} softmax classifier on {jax.devices()[0]} "
          f"for {seconds:.0f} s, streaming from {url}", file=sys.stderr)
    while (now := time.perf_counter()) - start < seconds:
        batch = next(batches)
        fetched = time.perf_counter() - now
        wait_time += fetched
        waited += fetched > WAIT_THRESHOLD_S
        params, loss, accuracy = step(params, batch)
        loss.block_until_ready()
        steps += 1
        if time.perf_counter() - last_report >= 1.0:
            last_report = time.perf_counter()
            rate = steps * batch_size / (last_report - start)
            print(f"  step {steps:6d}  loss {float(loss):.3f}  accuracy {float(accuracy):.3f}  "
                  f"{rate:,.0f} samples/s", file=sys.stderr)
    elapsed = time.perf_counter() - start
    stats = loader.stats()
    loader.close()
    samples = steps * batch_size
    print(f"steps: {steps}, final loss {float(loss):.3f}, accuracy {float(accuracy):.3f}")
    print(f"throughput: {samples / elapsed:,.0f} samples/s, "
          f"{samples * row_bytes / elapsed / 1e6:,.1f} MB/s")
    print(f"steps that waited on data (> {WAIT_THRESHOLD_S * 1e3:.0f} ms): "
          f"{100 * waited / max(steps, 1):.1f}%; time spent waiting: "
          f"{100 * wait_time / elapsed:.1f}%")
    print(explain(wait_time / elapsed, stats["waited_seconds"]))


def explain(waited_share: float, waited: dict[str, float]) -> str:
    """The figures in words a newcomer understands."""
    if waited_share < 0.1:
        return (f"the training loop waited on data {waited_share:.0%} of the time: the "
                "model's steps are the limit, and the data keeps up")
    cause = max(waited, key=waited.__getitem__)
    why = {"network": "the network carries the data more slowly than the model uses it "
                      "(try codec='zstd', or a faster link)",
           "daemon": "the daemon reads and encodes more slowly than the model uses the data "
                     "(a slow disk, or Parquet row groups to decompress)",
           "loader": "decoding here is the limit (more decode_threads, or decode images "
                     "on the daemon)"}[cause]
    return (f"the training loop waited on data {waited_share:.0%} of the time: the model is "
            f"tiny, so loading is the bottleneck here; most of the wait was on the {cause}: "
            f"{why}")


def _demo(args: argparse.Namespace) -> int:
    refused = posix.refusal("tether demo")
    if refused:
        print(refused, file=sys.stderr)
        return 2
    try:
        import jax  # noqa: F401
    except ImportError:
        print("tether demo trains with JAX: pip install jax (or 'tether[cuda12]' on a GPU)",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="tether-demo-") as tmp:
        data = Path(tmp) / "train"
        print(f"writing {args.rows:,} synthetic rows to {data}", file=sys.stderr)
        write_dataset(data, args.rows, args.features, args.classes)
        with DaemonProcess([data], Path(tmp) / "state", "--log-level", "warning",
                           capture_stderr=False) as daemon:
            train(daemon.url, args.seconds, args.batch_size, args.features, args.classes)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser(
        "demo", help="serve a synthetic dataset on loopback and train a small JAX model from it")
    demo.add_argument("--seconds", type=float, default=10.0, help="how long to train")
    demo.add_argument("--rows", type=int, default=100_000, help="rows in the synthetic dataset")
    demo.add_argument("--features", type=int, default=256)
    demo.add_argument("--classes", type=int, default=10)
    demo.add_argument("--batch-size", type=int, default=256)
    demo.set_defaults(run=_demo)
