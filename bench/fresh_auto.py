"""A fresh daemon's first stream with `codec="auto"` over a slow, far link.

    python -m tether.bench.fresh_auto [--link 100mbit] [--repeat 3] [--seconds 4]

Zipf tokens (bench/data.py), about `seconds` of the link at zstd level 1's
ratio, through the shaped link proxy (100mbit: 100 Mbit/s, 20 ms each way).
Each run starts a fresh daemon with pinned TLS, so the stream chooses its
codec from nothing, and a fresh client process that times `iter()` to the
first ready jax batch, and the whole stream from `Loader(...)` to the last.
Flight with zstd (plain gRPC, its own fresh server, bench.client) moves the
same data through the same link; the two alternate. Figures: the first
batch (median), Tether's MB/s over Flight's, and over the link's rate times
zstd level 1's ratio on the data.
`fresh_auto_figures()` returns them as a dict (for `tether bench --targets`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from tether.wire import tensors
from tether.wire.codecs import Compression

from . import data, measure
from .link import PRESETS, Link

BATCH_SIZE = 256
SAMPLE_BYTES = 4 << 20
CHILD_TIMEOUT_S = 600  # a stalled stream fails the bench instead of hanging it


def zstd_one_ratio(dataset: Path) -> float:
    """Raw over wire bytes of the dataset's first rows at zstd level 1 (byte-shuffled,
    integers narrowed: what `auto` and `zstd` send it as)."""
    raw = wire = 0
    for name, values in data.load(dataset).items():
        rows = max(1, SAMPLE_BYTES // max(values[:1].nbytes, 1))
        sample = np.ascontiguousarray(values[:rows])
        encoded = tensors.encode(name, sample, Compression("zstd", 1), byte_shuffle=True,
                                 narrow=True)
        raw, wire = raw + sample.nbytes, wire + encoded.data.nbytes
    return raw / wire


def _child(url: str) -> None:
    """In a fresh process: one loader over the whole dataset; its times as JSON."""
    import jax

    from tether import Loader

    jax.block_until_ready(jax.device_put(1.0))  # JAX's runtime started before timing
    payload, first = 0, None
    built = time.perf_counter()
    loader = Loader(url, dataset="tokens", batch_size=BATCH_SIZE, codec="auto")
    asked = time.perf_counter()
    for batch in loader:
        jax.block_until_ready(jax.device_put(batch))  # ready arrays, as bench.client has
        first = time.perf_counter() - asked if first is None else first
        payload += sum(v.nbytes for v in batch.values())
    print(json.dumps({"iter_first_s": first, "construct_first_s": asked - built + first,
                      "seconds": time.perf_counter() - built, "payload_bytes": payload}))


def _tether_run(dataset: Path, state: Path, link: Link) -> dict[str, float]:
    from .first_batch import serve_through

    daemon, proxy, url = serve_through(dataset, state, link)
    try:
        out = subprocess.run([sys.executable, "-m", "tether.bench.fresh_auto", "--child", url],
                             capture_output=True, text=True, check=False, timeout=CHILD_TIMEOUT_S)
    finally:
        proxy.close()
        daemon.close()
    if out.returncode != 0:
        raise RuntimeError(f"fresh-auto client failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def fresh_auto_figures(link: Link = PRESETS["100mbit"], repeats: int = 3,
                       seconds: float = 4.0, workdir: Path | None = None) -> dict[str, Any]:
    tether: list[dict[str, float]] = []
    flight: list[measure.Measurement] = []
    with tempfile.TemporaryDirectory(prefix="tether-fresh-auto-", dir=workdir) as tmp:
        probe = data.write("tokens", Path(tmp) / "probe", SAMPLE_BYTES)
        ratio = zstd_one_ratio(probe)
        size = int(link.rate / 8 * ratio * seconds)
        dataset = data.write("tokens", Path(tmp) / "data", size)
        raw = sum(v.nbytes for v in data.load(dataset).values())
        for repeat in range(repeats):  # alternating, each run on a fresh server
            run = _tether_run(dataset, Path(tmp) / f"state-{repeat}", link)
            if run["payload_bytes"] != raw:
                raise RuntimeError(f"the stream delivered {run['payload_bytes']} bytes of "
                                   f"{raw}")
            run["mb_per_s"] = run["payload_bytes"] / run["seconds"] / 1e6
            tether.append(run)
            print(f"tether auto TLS: iter() to first batch {run['iter_first_s']:.3f} s, "
                  f"{run['mb_per_s']:.1f} MB/s", file=sys.stderr, flush=True)
            folder = Path(tmp) / f"flight-{repeat}"
            folder.mkdir()
            flight.append(measure.run("flight-zstd", dataset, link, folder, BATCH_SIZE))
            print(f"flight zstd: {flight[-1].mb_per_s:.1f} MB/s", file=sys.stderr, flush=True)
    tether_mb = statistics.median(r["mb_per_s"] for r in tether)
    flight_mb = statistics.median(r.mb_per_s for r in flight)
    link_mb = link.rate / 8 / 1e6
    return {
        "link": link.name, "repeats": repeats, "raw_mb": raw / 1e6, "zstd1_ratio": ratio,
        "iter_first_s": statistics.median(r["iter_first_s"] for r in tether),
        "iter_first_runs_s": [r["iter_first_s"] for r in tether],
        "construct_first_s": statistics.median(r["construct_first_s"] for r in tether),
        "tether_mb_per_s": tether_mb, "flight_zstd_mb_per_s": flight_mb,
        "vs_flight_zstd": tether_mb / flight_mb,
        "vs_link_zstd1": tether_mb / (link_mb * ratio),
    }


def report(figures: dict[str, Any]) -> str:
    return "\n".join([
        f"fresh daemon, codec auto, pinned TLS, over {figures['link']}: "
        f"{figures['raw_mb']:.0f} MB of tokens, median of {figures['repeats']}",
        f"first batch from iter(): {figures['iter_first_s']:.3f} s (runs "
        f"{', '.join(f'{s:.3f}' for s in figures['iter_first_runs_s'])}); from Loader(): "
        f"{figures['construct_first_s']:.3f} s",
        f"stream: {figures['tether_mb_per_s']:.1f} MB/s; Flight zstd "
        f"{figures['flight_zstd_mb_per_s']:.1f} MB/s ({figures['vs_flight_zstd']:.2f}x); "
        f"link x zstd-1 ratio {figures['zstd1_ratio']:.2f}: {figures['vs_link_zstd1']:.2f}",
    ])


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        _child(argv[1])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--link", default="100mbit", choices=[n for n, link in
                                                              PRESETS.items() if link.rate])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    figures = fresh_auto_figures(PRESETS[args.link], args.repeat, args.seconds)
    print(report(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
