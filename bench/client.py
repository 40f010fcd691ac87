"""The client side of one benchmark run, in a process of its own.

    python -m tether.bench.client SYSTEM DATASET_DIR HOST PORT BATCH_SIZE STEP_S

Consumes every batch as a ready jax.Array (device_put + block_until_ready),
sleeping STEP_S per batch when asked, and prints one JSON object: rows,
payload bytes, the system's units (e.g. real tokens), seconds, time to first
batch, steps and steps that waited, CPU seconds and peak RSS of this
process. Isolated so that its CPU and memory are the client's alone.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

# A step "waited on data" when fetching its batch blocked longer than this.
WAIT_THRESHOLD_S = 1e-3


def peak_rss(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def timed_fetches(batches: Iterable) -> Iterator[tuple[object, float]]:
    """Each batch with the seconds its fetch took (what a step waited on data)."""
    batches = iter(batches)
    while True:
        fetch = time.perf_counter()
        batch = next(batches, None)
        fetched = time.perf_counter() - fetch
        if batch is None:
            return
        yield batch, fetched


def consume(make_batches, step_s: float, units=lambda batch: 0) -> dict:
    """Time everything from asking for the batches (a download-first system
    does its whole transfer there) to the last one being ready. `units(batch)`
    counts what the system's rows hold that training uses (System.units)."""
    import jax

    rows = payload = steps = waited = counted = 0
    first = None
    cpu = os.times()
    start = time.perf_counter()
    for batch, fetched in timed_fetches(make_batches()):
        # on device as to_jax() puts it: numbers; text and dates stay numpy beside them.
        # A system that delivers ready arrays itself (to_jax, to_torch) is taken as is.
        jax.block_until_ready(jax.device_put({k: v for k, v in batch.items()
                                              if isinstance(v, np.ndarray)
                                              and v.dtype.kind in "biuf"}))
        if first is None:
            first = time.perf_counter() - start
        elif step_s and fetched > WAIT_THRESHOLD_S:  # without steps every fetch waits
            waited += 1
        steps += 1
        rows += len(next(iter(batch.values())))
        # The bytes delivered: numpy's, since JAX without x64 narrows int64 to int32.
        payload += sum(v.nbytes for v in batch.values())
        counted += units(batch)
        if step_s:
            time.sleep(step_s)  # the training step this loop stands for
    seconds = time.perf_counter() - start
    end = os.times()
    return {"rows": rows, "payload_bytes": payload, "units": counted, "seconds": seconds,
            "first_batch_s": first if first is not None else seconds,
            "steps": steps, "waited_steps": waited,
            "client_cpu_s": end.user + end.system - cpu.user - cpu.system,
            "client_peak_rss": peak_rss()}


def main(argv: list[str]) -> None:
    import jax

    from tether.wire.allocator import tune_allocator

    from .systems import REGISTRY

    system, dataset, host, port, batch_size, step_s = argv
    jax.block_until_ready(jax.device_put(1.0))  # start JAX's runtime before timing
    tune_allocator()  # every system's client gets the allocator tuning Tether's loader does
    address = (host, int(port)) if host != "-" else None
    system = REGISTRY[system]()
    system.warm_up()  # its framework imported before timing, as JAX's is above
    figures = consume(lambda: system.batches(Path(dataset), address, int(batch_size)),
                      float(step_s), system.units)
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
