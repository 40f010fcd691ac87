"""Steps that wait on data, on a real accelerator, with device prefetch.

    python -m tether.bench.gpu_steps --link 100mbit,1gbit --size 150MB,600MB

For each link: the real daemon serves float features behind the shaped link;
a first pass measures how many batches per second the link delivers; then a
jitted MLP step is made to take about `--load` of that batch time (its
matrix products repeated), and a fresh loader feeds it through
`loader.to_jax()` (batches placed on the device ahead of use). A step
waited on data when fetching its batch took over a millisecond. Prints a
table and one JSON line with every figure. Runs on any JAX backend; the
figures that matter come from a GPU.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from tether.wire.sizes import parse_size

from . import data
from .client import WAIT_THRESHOLD_S, timed_fetches
from .link import PRESETS, Link, ShapedProxy

WIDTH = 1024


def _model(repeats: int):
    import jax
    import jax.numpy as jnp

    def loss(params, x, y):
        h = jnp.tanh(x @ params["w_in"])
        for _ in range(repeats):  # the step's cost, tuned to the link
            h = jnp.tanh(h @ params["w"])
        logits = h @ params["w_out"]
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(y)), y % 10])

    @jax.jit
    def step(params, x, y):
        value, grads = jax.value_and_grad(loss)(params, x, y)
        return jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads), value

    key = jax.random.PRNGKey(0)
    params = {"w_in": jax.random.normal(key, (256, WIDTH)) / 16,
              "w": jax.random.normal(key, (WIDTH, WIDTH)) / 32,
              "w_out": jax.random.normal(key, (WIDTH, 10)) / 32}
    return step, params


def _step_seconds(repeats: int, batch_size: int) -> tuple[float, object]:
    """A compiled step of `repeats` layers, and its time on this device."""
    import jax
    import jax.numpy as jnp

    step, params = _model(repeats)
    x = jnp.ones((batch_size, 256), jnp.float32)
    y = jnp.zeros((batch_size,), jnp.int64 if jax.config.jax_enable_x64 else jnp.int32)
    params, value = step(params, x, y)
    jax.block_until_ready(value)
    started = time.perf_counter()
    for _ in range(10):
        params, value = step(params, x, y)
        jax.block_until_ready(value)
    return (time.perf_counter() - started) / 10, step


def _loader(url, dataset: str, batch_size: int, cache: Path | None = None, epochs=1):
    import tether

    return tether.Loader(url, dataset=dataset, batch_size=batch_size, shuffle=True, seed=0,
                         num_epochs=epochs, cache=cache)


def _link_batches_per_s(url, dataset: str, batch_size: int) -> float:
    """Batches per second the link delivers to the device with no step at all."""
    import jax

    with _loader(url, dataset, batch_size) as loader:
        batches = iter(loader.to_jax())
        for _ in range(3):  # start-up is not the link's rate
            jax.block_until_ready(next(batches))
        started, count = time.perf_counter(), 0
        for batch in batches:
            jax.block_until_ready(batch)
            count += 1
    return count / (time.perf_counter() - started)


def _train(url, dataset: str, batch_size: int, step, epochs: int = 1,
           cache: Path | None = None) -> dict:
    """Every batch through `step`; which steps waited for their batch, per epoch."""
    import jax

    _, params = _model(0)  # the same parameters at any depth
    waited: list[list[int]] = [[] for _ in range(epochs)]
    with _loader(url, dataset, batch_size, cache, epochs) as loader:
        device = loader.to_jax(buffer_size=2)
        started = time.perf_counter()
        rows = 0
        for batch, fetched in timed_fetches(device):
            waited[min(loader.epoch, epochs - 1)].append(int(fetched > WAIT_THRESHOLD_S))
            params, value = step(params, batch["x"], batch["label"])
            jax.block_until_ready(value)
            rows += len(batch["x"])
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": rows,
            "steps": [len(w) for w in waited], "waited_steps": [sum(w) for w in waited]}


def measure(link: Link, size: int, batch_size: int, load: float, workdir: Path) -> dict:
    import jax

    import tether
    from tether.daemon.spawn import DaemonProcess

    dataset = data.write("floats", workdir / f"data-{link.name}", size)
    with DaemonProcess([dataset], workdir / f"state-{link.name}", "--insecure",
                       "--log-level", "error") as daemon:
        endpoint = tether.parse_url(daemon.url)
        proxy = ShapedProxy(("127.0.0.1", endpoint.port), link) if link.shaped else None
        try:
            url = endpoint if proxy is None else endpoint.with_address("127.0.0.1", proxy.port)
            link_rate = _link_batches_per_s(url, dataset.name, batch_size)
            target = load / link_rate  # a step this long keeps the link `load` busy
            one, _ = _step_seconds(1, batch_size)
            two, _ = _step_seconds(2, batch_size)
            per_layer = max(two - one, 1e-6)
            repeats = max(1, round(1 + (target - one) / per_layer))
            step_s, step = _step_seconds(repeats, batch_size)
            streamed = _train(url, dataset.name, batch_size, step)
            cached = _train(url, dataset.name, batch_size, step, epochs=2,
                            cache=workdir / f"cache-{link.name}")
        finally:
            if proxy is not None:
                proxy.close()
    return {"link": link.name, "device": str(jax.devices()[0]), "batch_size": batch_size,
            "link_batches_per_s": link_rate, "step_s": step_s, "layers": repeats,
            "load": step_s * link_rate, "streamed": streamed, "cached": cached,
            "waited_share": _share(streamed, 0),
            "cached_epoch2_waited_share": _share(cached, 1),
            "samples_per_s": streamed["rows"] / streamed["seconds"]}


def _share(run: dict, epoch: int) -> float:
    return run["waited_steps"][epoch] / max(run["steps"][epoch], 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--link", default="100mbit,1gbit")
    parser.add_argument("--size", default="150MB,600MB", help="data per link, comma-separated")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--load", type=float, default=0.9,
                        help="a step's time over the link's time per batch")
    args = parser.parse_args(argv)
    links = [PRESETS[name] for name in args.link.split(",")]
    sizes = [parse_size(s) for s in args.size.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="tether-gpu-") as tmp:
        for link, size in zip(links, sizes, strict=True):
            results.append(measure(link, size, args.batch_size, args.load, Path(tmp)))
            r = results[-1]
            print(f"{r['link']:<8} on {r['device']}: step {r['step_s'] * 1e3:.1f} ms "
                  f"({r['load']:.0%} of the link's batch time), {r['samples_per_s']:,.0f} "
                  f"samples/s; steps waiting on data {r['waited_share']:.1%} "
                  f"({r['streamed']['waited_steps'][0]} of {r['streamed']['steps'][0]}); "
                  f"from the cache (epoch 2) {r['cached_epoch2_waited_share']:.1%}", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
