"""Results home and back through the real daemon: a folder appears whole or not at
all, 1 GB uploads and downloads cut three times resume (less than 1.2 GB sent,
the same hash, flat memory), shares are read-only and contained, list()."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import tether
from tether.bench.link import Link, ShapedProxy

from ..conftest import OWN_PEAK, wait_until

GB = 1 << 30


def _sha(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _write_random(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        block = os.urandom(16 << 20)
        for start in range(0, size, len(block)):  # random per block: no codec shrinks it
            f.write(hashlib.sha256(str(start).encode()).digest() + block[32:])


def test_a_folder_upload_appears_whole_or_not_at_all(serve, npy_dataset, tmp_path) -> None:
    folder = tmp_path / "ckpt"
    files = {f"step_{i}/shard_{j}.bin": os.urandom(1 << 20) for i in range(3) for j in range(8)}
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    daemon = serve(npy_dataset(10))
    target = tmp_path / "state0" / "results" / "run-1" / "ckpt"
    seen: set[int] = set()
    done = threading.Event()

    def watch() -> None:  # a restorer polling the results folder all along
        while not done.is_set():
            seen.add(sum(1 for p in target.rglob("*") if p.is_file()) if target.exists() else 0)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with daemon.client() as client:
            stored = client.upload("run-1/ckpt", folder)
    finally:
        done.set()
        watcher.join()
    assert seen <= {0, len(files)} and len(files) in seen | {len(files)}
    assert stored.size == sum(map(len, files.values()))
    for name, data in files.items():
        assert (target / name).read_bytes() == data
    with daemon.client() as client:
        with pytest.raises(tether.RequestError, match="exists; upload with overwrite=True"):
            client.upload("run-1/ckpt", folder)
        listed = client.list("run-1/")
    assert sorted(f.name for f in listed) == sorted(f"run-1/ckpt/{n}" for n in files)
    assert all(f.size == 1 << 20 and f.modified > 0 for f in listed)


MEASURE = OWN_PEAK + """
import json, sys
import tether
from tether.retry import RetryPolicy
url, what, name, path = sys.argv[1:5]
client = tether.connect(url, retry=RetryPolicy(initial=0.05))
reset_peak()
before = peak_mb()
if what == "upload":
    client.upload(name, path, progress=False)
else:
    client.download(name, path)
print(json.dumps({"sent": client.transfers.sent, "received": client.transfers.received,
                  "grew_mb": peak_mb() - before}))
"""


def _through_cuts(daemon, what: str, name: str, path: Path) -> tuple[dict, int]:
    """Run one transfer in a fresh process through a proxy that cuts each
    connection after 220 to 300 MB; its figures and how many cuts there were."""
    proxy = ShapedProxy(("127.0.0.1", tether.parse_url(daemon.url).port), Link("cutting", None),
                        cut_range=(220 << 20, 300 << 20), seed=1, cut_up=what == "upload")
    try:
        through = tether.parse_url(daemon.url).with_address("127.0.0.1", proxy.port).url()
        done = subprocess.run([sys.executable, "-c", MEASURE, through, what, name, str(path)],
                              capture_output=True, text=True, timeout=600)
    finally:
        cuts = proxy.close().count("cut after")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1]), cuts


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.slow
def test_a_1gb_upload_and_download_cut_three_times_resume(serve, npy_dataset, tmp_path) -> None:
    source = tmp_path / "big.bin"
    _write_random(source, GB)
    share = tmp_path / "share"
    share.mkdir()
    daemon = serve(npy_dataset(10), args=("--share", f"models={share}"))
    before = _peak_rss_mb(daemon.proc.pid)

    up, cuts = _through_cuts(daemon, "upload", "run/big.bin", source)
    print("upload", cuts, "cuts", up)  # the figures docs/results.md quotes (pytest -s)
    stored = tmp_path / "state0" / "results" / "run" / "big.bin"
    assert cuts >= 3 and up["sent"] < 1.2 * GB, (cuts, up)
    assert _sha(stored) == _sha(source)
    assert up["grew_mb"] < 100, up

    os.link(source, share / "big.bin")  # a pretrained file, shared read-only
    back = tmp_path / "back" / "big.bin"
    with daemon.client() as client:
        sent_before = client.status().bytes_sent
    down, cuts = _through_cuts(daemon, "download", "models/big.bin", back)
    with daemon.client() as client:  # what left the daemon, the bytes lost in cuts included
        assert client.status().bytes_sent - sent_before < 1.2 * GB
    print("download", cuts, "cuts", down, "daemon peak RSS grew",
          _peak_rss_mb(daemon.proc.pid) - before, "MB")
    assert cuts >= 3 and down["received"] < 1.2 * GB, (cuts, down)
    assert _sha(back) == _sha(source) and not list(back.parent.glob("*.tether-partial*"))
    # Not the 1 GiB file: 60-63 MB measured alone; 149 MB on the oldest stack
    # (grpcio 1.66) with other tests loading both cores, gRPC's receive
    # buffers filling while this process waits for a core.
    assert down["grew_mb"] < 256, down
    assert _peak_rss_mb(daemon.proc.pid) - before < 200  # the daemon's memory stays flat


def test_shares_are_read_only_and_nothing_outside_them_is_reachable(serve, npy_dataset,
                                                                   tmp_path) -> None:
    share = tmp_path / "pretrained"
    (share / "bert-base").mkdir(parents=True)
    (share / "bert-base" / "config.json").write_text('{"layers": 12}')
    (share / "bert-base" / "weights.bin").write_bytes(os.urandom(3 << 20))
    secret = tmp_path / "secret.txt"
    secret.write_text("not shared")
    (share / "leak.txt").symlink_to(secret)
    (share / "leakdir").symlink_to(tmp_path)
    daemon = serve(npy_dataset(10), args=("--share", f"models={share}"))
    with daemon.client() as client:
        got = client.download("models/bert-base", tmp_path / "bert")
        names = sorted(f.name for f in client.list("models/"))
        for bad in ("models/leak.txt", "models/leakdir/secret.txt", "models/../secret.txt",
                    "/etc/passwd", "models/bert-base/../../secret.txt"):
            with pytest.raises((tether.DatasetNotFound, tether.RequestError)):
                client.download(bad, tmp_path / "x")
        with pytest.raises(tether.RequestError):  # the daemon takes no upload into a share
            client.upload("../pretrained/x.txt", b"x")
    assert names == ["models/bert-base/config.json", "models/bert-base/weights.bin"]
    assert (got / "config.json").read_text() == '{"layers": 12}'
    assert _sha(got / "weights.bin") == _sha(share / "bert-base" / "weights.bin")
    assert not (tmp_path / "x").exists() and secret.read_text() == "not shared"


def test_a_download_of_a_file_changed_at_home_starts_again(serve, npy_dataset,
                                                           tmp_path) -> None:
    daemon = serve(npy_dataset(10))
    with daemon.client() as client:
        client.upload("notes.bin", b"a" * 1000)
        dest = tmp_path / "notes.bin"
        partial = tmp_path / "notes.bin.tether-partial"
        partial.write_bytes(b"a" * 500)  # a download broken half-way
        (tmp_path / "notes.bin.tether-partial.sha256").write_text("0" * 64)  # of another version
        client.download("notes.bin", dest)
    assert dest.read_bytes() == b"a" * 1000
    assert not partial.exists()
    wait_until(lambda: not (tmp_path / "notes.bin.tether-partial.sha256").exists(),
               "the partial download's version file removed", timeout=5)


def test_no_upload_under_a_share_name_and_no_share_over_the_daemons_own(
        serve, npy_dataset, tmp_path) -> None:
    """Found by a review: an upload named like a share was hidden by it, and a share
    holding the state folder served the daemon's key and token."""
    share = tmp_path / "pretrained"
    share.mkdir()
    daemon = serve(npy_dataset(10), args=("--share", f"models={share}"))
    with daemon.client() as client, pytest.raises(tether.RequestError, match="shares"):
        client.upload("models/mine.txt", b"x")
    with pytest.raises(RuntimeError, match="overlaps"):
        serve(npy_dataset(10, name="other"), args=("--share", f"home={tmp_path}"))
