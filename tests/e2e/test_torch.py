"""PyTorch against the real daemon: `to_torch()`, `to_torch_dataset()` in
DataLoader and torchdata's StatefulDataLoader (resumed in a new process),
DataLoader workers refused, a pickled Loader in a spawned process, and two
DDP ranks (gloo) splitting one shuffled order."""

from __future__ import annotations

import json
import multiprocessing
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
stateful = pytest.importorskip("torchdata.stateful_dataloader")

from torch.utils.data import DataLoader  # noqa: E402

import tether  # noqa: E402
from tether.wire.errors import RequestError  # noqa: E402

ROWS = 1000
BATCH = 32  # 31 full batches and a short one of 8


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    from tests.conftest import DaemonProcess, make_features

    folder = tmp_path_factory.mktemp("data") / "train"
    folder.mkdir()
    for column, values in make_features(ROWS).items():
        np.save(folder / f"{column}.npy", values)
    process = DaemonProcess([folder], tmp_path_factory.mktemp("state"))
    yield process
    assert process.stop() == 0, process.stderr_text()[-2000:]
    process.close()


def _loader(url: str, **options) -> tether.Loader:
    return tether.Loader(url, dataset="train", batch_size=BATCH, shuffle=True, seed=7,
                         **options)


def _ids(batches) -> list[int]:
    return [int(i) for b in batches for i in np.asarray(b["id"])]


def _epochs(url: str, epochs: int) -> list[list[int]]:
    with _loader(url, num_epochs=epochs) as loader:
        rows = _ids(loader)
    return [rows[e * ROWS:(e + 1) * ROWS] for e in range(epochs)]


def test_to_torch_delivers_the_loaders_rows_as_tensors_that_stay_valid(daemon) -> None:
    (expected,) = _epochs(daemon.url, 1)
    with _loader(daemon.url) as loader:
        batches = loader.to_torch()
        assert len(batches) == 32
        first = next(batches)
        kept = {k: v.clone() for k, v in first.items()}
        rest = list(batches)
    assert {k: v.dtype for k, v in first.items()} == {
        "id": torch.int64, "x": torch.float32, "image": torch.uint8, "label": torch.int32}
    assert first["image"].shape == (BATCH, 4, 4, 3)
    assert _ids([first, *rest]) == expected
    for name, tensor in first.items():  # a kept batch is never overwritten by later ones
        assert torch.equal(tensor, kept[name]), name


def test_to_torch_state_leaves_out_the_batches_still_in_its_buffer(daemon) -> None:
    """On a device (meta: no data, the same copy-ahead path as cuda) the iterator
    holds buffer_size batches; its state is after the one it handed out."""
    with _loader(daemon.url) as loader:
        batches = loader.to_torch(device="meta", buffer_size=3)
        for _ in range(5):
            batch = next(batches)
        assert batch["x"].device.type == "meta"
        state = batches.state_dict()
    assert state["request"]["start"] == {"epoch": 0, "row": 5 * BATCH}


def test_pin_memory_without_cuda_is_refused_clearly(daemon) -> None:
    with _loader(daemon.url) as loader, pytest.raises(RequestError, match="needs CUDA"):
        loader.to_torch(pin_memory=True)


def test_each_pass_over_the_dataset_is_the_next_epoch_and_none_past_the_last(daemon) -> None:
    expected = _epochs(daemon.url, 2)
    with _loader(daemon.url, num_epochs=2) as loader:
        dataset = loader.to_torch_dataset()
        assert isinstance(dataset, torch.utils.data.IterableDataset)
        from torch.distributed.checkpoint.stateful import Stateful

        assert isinstance(dataset, Stateful)
        dl = DataLoader(dataset, batch_size=None, pin_memory=True)
        assert len(dl) == 32
        first = list(dl)  # pinned where there is an accelerator (torch warns here: none)
        assert isinstance(first[0]["x"], torch.Tensor)
        second = list(dl)
        assert dataset.categories == {}  # the stream's vocabularies: none in this dataset
        assert _ids(first) == expected[0] and _ids(second) == expected[1]
        assert expected[0] != expected[1] and sorted(expected[1]) == list(range(ROWS))
        with pytest.raises(RequestError, match="num_epochs=None"):
            list(dl)


RESUME = """
import json, sys
import numpy as np
import tether
from torchdata.stateful_dataloader import StatefulDataLoader
url, state = sys.argv[1], json.loads(sys.argv[2])
loader = tether.Loader(url, dataset="train", batch_size=32, shuffle=True, seed=7,
                       num_epochs=None)
dl = StatefulDataLoader(loader.to_torch_dataset(), batch_size=None)
dl.load_state_dict(state)
rest = [int(i) for batch in dl for i in batch["id"]]
following = [int(i) for batch in dl for i in batch["id"]]
print(json.dumps([rest, following]))
"""


def test_stateful_dataloader_resumes_mid_epoch_in_a_new_process(daemon) -> None:
    expected = _epochs(daemon.url, 2)
    with _loader(daemon.url, num_epochs=None) as loader:
        dl = stateful.StatefulDataLoader(loader.to_torch_dataset(), batch_size=None)
        batches = iter(dl)
        head = [next(batches) for _ in range(11)]
        state = dl.state_dict()
    json.dumps(state)  # what a checkpoint writes
    done = subprocess.run([sys.executable, "-c", RESUME, daemon.url, json.dumps(state)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    rest, following = json.loads(done.stdout.splitlines()[-1])
    assert _ids(head) + rest == expected[0]  # mid-epoch: not a row repeated or skipped
    assert following == expected[1]  # and the loop's next pass is the next epoch


WORKERS = """
import sys
import tether
from torch.utils.data import DataLoader
from tether.wire.errors import RequestError
with tether.Loader(sys.argv[1], dataset="train", batch_size=32) as loader:
    dl = DataLoader(loader.to_torch_dataset(), batch_size=None, num_workers=2,
                    multiprocessing_context="spawn")
    try:
        list(dl)
    except RequestError as exc:
        print("refused:", exc)
"""


def test_dataloader_workers_are_refused_saying_why_and_what_to_do(daemon) -> None:
    """In a process of its own: the refusal comes from one worker while the other
    may still be starting, and torch, watching its workers with a SIGCHLD
    handler that outlives the DataLoader, then failed a later test here when
    that worker died at start ("DataLoader worker exited unexpectedly", CI).
    spawn: a fork of a multithreaded process (gRPC, JAX) could deadlock the child."""
    done = subprocess.run([sys.executable, "-c", WORKERS, daemon.url], capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "refused:" in done.stdout and "num_workers=0" in done.stdout


def _rest_in_child(pickled: bytes, out) -> None:
    loader = pickle.loads(pickled)
    out.put([int(i) for batch in loader for i in batch["id"]])


def test_a_pickled_loader_resumes_in_a_spawned_process(daemon) -> None:
    (expected,) = _epochs(daemon.url, 1)
    with _loader(daemon.url) as loader:
        batches = iter(loader)
        head = [next(batches) for _ in range(4)]
        pickled = pickle.dumps(loader)
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    child = context.Process(target=_rest_in_child, args=(pickled, out))
    child.start()
    rest = out.get(timeout=120)
    child.join(30)
    assert child.exitcode == 0
    assert _ids(head) + rest == expected


RANK = """
import json, sys
import torch.distributed as dist
import tether
rank, port, url, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
loader = tether.Loader(url, dataset="train", batch_size=32, shuffle=True, seed=7)
assert (loader.spec.process_index, loader.spec.process_count) == (rank, 2)
mine = [[int(i) for i in batch["id"]] for batch in loader.to_torch()]
everyone = [None, None]
dist.all_gather_object(everyone, mine)
if rank == 0:
    open(out, "w").write(json.dumps(everyone))
dist.destroy_process_group()
"""


def test_ddp_ranks_get_equal_batches_and_disjoint_rows(daemon, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "ranks.json"
    ranks = [subprocess.Popen([sys.executable, "-c", RANK, str(rank), str(port), daemon.url,
                               str(out)], stderr=subprocess.PIPE, text=True)
             for rank in range(2)]
    for rank in ranks:
        _, stderr = rank.communicate(timeout=180)
        assert rank.returncode == 0, stderr[-3000:]
    first, second = json.loads(out.read_text())
    assert len(first) == len(second) == ROWS // (2 * BATCH)  # 15 full global batches each
    assert all(len(batch) == BATCH for batch in first + second)
    rows = [set(i for batch in rank for i in batch) for rank in (first, second)]
    assert not rows[0] & rows[1]
    assert len(rows[0] | rows[1]) == ROWS - ROWS % (2 * BATCH)


def test_a_state_saved_after_an_epochs_last_batch_resumes_at_the_next_epoch(daemon) -> None:
    """Found by a review: the position after the last batch is the epoch's end,
    and a pass resumed there was an empty epoch (the loop lost one)."""
    expected = _epochs(daemon.url, 2)
    with _loader(daemon.url, num_epochs=None) as loader:
        dl = stateful.StatefulDataLoader(loader.to_torch_dataset(), batch_size=None)
        first = list(dl)
        state = dl.state_dict()
        assert dl.dataset.state_dict()["fingerprint"]  # the version read stays pinned
    with _loader(daemon.url, num_epochs=None) as loader:
        dl = stateful.StatefulDataLoader(loader.to_torch_dataset(), batch_size=None)
        dl.load_state_dict(state)
        second = list(dl)
        assert len(dl) == 32
    assert _ids(first) == expected[0] and _ids(second) == expected[1]


def test_a_peek_at_one_batch_loses_no_row_of_the_epoch_and_len_stays_whole(daemon) -> None:
    (expected,) = _epochs(daemon.url, 1)
    with _loader(daemon.url, num_epochs=None) as loader:
        dataset = loader.to_torch_dataset()
        dl = DataLoader(dataset, batch_size=None)
        peek = next(iter(dl))  # a look at the shapes, as notebooks do
        assert peek["x"].shape == (BATCH, 8)
        assert _ids(dl) == expected  # the pass after the peek is the whole epoch
        resumed = stateful.StatefulDataLoader(loader.to_torch_dataset(), batch_size=None)
        batches = iter(resumed)
        for _ in range(20):
            next(batches)
        restored = stateful.StatefulDataLoader(loader.to_torch_dataset(), batch_size=None)
        restored.load_state_dict(resumed.state_dict())
        assert len(list(restored)) == 12
        assert len(restored) == 32  # a full epoch's batches, not the resumed rest's
