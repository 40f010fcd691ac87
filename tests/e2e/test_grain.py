"""`loader.to_grain()` in real Grain pipelines, checkpointed with real Orbax, against a real daemon.

The Orbax example of docs/reliability.md is run as written there: its three
code blocks are read from the page, so the doc and the test cannot drift apart.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

grain = pytest.importorskip("grain")
pytest.importorskip("orbax.checkpoint")

from absl import flags  # noqa: E402  (Grain depends on absl)

import tether  # noqa: E402

ROWS = 20_000  # 313 batches of 64: a checkpoint every 100 steps lands mid-epoch
DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
SECTION = "### One Orbax checkpoint for the model and a Grain pipeline"


def _keep(batch: dict[str, np.ndarray]) -> bool:
    return bool(batch["label"][0] != 3)


def _pipeline(loader: tether.Loader):
    return loader.to_grain().map(lambda b: {**b, "x": b["x"] * 2}).filter(_keep)


@pytest.fixture
def daemon(serve, npy_dataset):
    return serve(npy_dataset(ROWS))


def _loader(url: str) -> tether.Loader:
    return tether.Loader(url, dataset="train", batch_size=64, shuffle=True, seed=0)


def test_a_pipeline_yields_the_loaders_batches_and_resumes_from_get_state(daemon) -> None:
    with _loader(daemon.url) as loader:
        plain = list(loader)
    expected = [{**b, "x": b["x"] * 2} for b in plain if _keep(b)]
    assert 0 < len(expected) < len(plain)
    with _loader(daemon.url) as loader:
        batches = iter(_pipeline(loader))
        head = [next(batches) for _ in range(40)]
        state = batches.get_state()
        json.dumps(state)  # JSON, as Grain's Orbax handler writes it
        assert state == loader.state_dict()
        rest = list(batches)
    _assert_same(head + rest, expected)
    with _loader(daemon.url) as loader:  # a new loader of the same stream resumes the state
        again = iter(_pipeline(loader))
        again.set_state(state)
        _assert_same(list(again), rest)


def test_each_iter_starts_where_the_loader_was_and_set_state_checks_the_stream(daemon) -> None:
    with _loader(daemon.url) as loader:
        ds = _pipeline(loader)
        first = [b["id"] for b, _ in zip(iter(ds), range(3), strict=False)]
        second = [b["id"] for b, _ in zip(iter(ds), range(3), strict=False)]
        assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
        stacked = next(iter(ds.batch(2)))  # Grain's batch stacks whole batches
        assert stacked["id"].shape == (2, 64)
        np.testing.assert_array_equal(stacked["id"][1], first[1])
        other = tether.Loader(daemon.url, dataset="train", batch_size=64, shuffle=True, seed=1)
        with pytest.raises(tether.RequestError, match="seed: state has 1, loader 0"):
            iter(ds).set_state(other.state_dict())
        other.close()


def test_mp_prefetch_fails_saying_why_and_what_to_use_instead(daemon) -> None:
    flags.FLAGS.mark_as_parsed()  # as absl.app.run does; Grain's workers read its flags
    with _loader(daemon.url) as loader:
        ds = _pipeline(loader).mp_prefetch(grain.MultiprocessingOptions(num_workers=2))
        with pytest.raises(tether.RequestError, match="cannot be pickled into mp_prefetch"):
            next(iter(ds))
        # With no workers mp_prefetch does nothing, and the pipeline runs as without it.
        ds = _pipeline(loader).mp_prefetch(grain.MultiprocessingOptions(num_workers=0))
        assert next(iter(ds))["id"].shape == (64,)


def test_thread_prefetch_keeps_the_position_of_the_batch_consumed(daemon) -> None:
    with _loader(daemon.url) as loader:
        ds = grain.experimental.ThreadPrefetchIterDataset(_pipeline(loader),
                                                          prefetch_buffer_size=4)
        batches = iter(ds)
        head = [next(batches) for _ in range(10)]
        state = batches.get_state()
        rest = list(batches)
        batches.close()
    with _loader(daemon.url) as loader:
        again = iter(_pipeline(loader))
        again.set_state(state)
        _assert_same(list(again), rest)
    assert head


def _doc_blocks() -> list[str]:
    """The setup, training and resume blocks of the Orbax example, as the page has them."""
    text = DOC.read_text()
    section = text[text.index(SECTION):]
    section = section[:section.index("\n## ")]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 3, "the Orbax example is three python blocks: setup, train, resume"
    return blocks


# What the example leaves to the reader: the URL, the folder, and a train step
# that records what it saw.
_HARNESS = """
import json, sys
import numpy as np
URL, CKPT_DIR, OUT = sys.argv[1], sys.argv[2], sys.argv[3]
SEEN = []

def train_step(params, batch):
    SEEN.append(batch["id"].tolist())
    params = {"w": params["w"] + batch["x"].mean(axis=0), "steps": params["steps"] + 1}
    return params
"""

_REPORT = """
json.dump({"seen": SEEN, "steps": int(params["steps"]),
           "w": np.asarray(params["w"]).tolist()}, open(OUT, "w"))
"""


def _run(blocks: list[str], url: str, ckpt: Path, out: Path) -> dict:
    script = "\n".join([_HARNESS, *blocks, _REPORT])
    subprocess.run([sys.executable, "-c", script, url, str(ckpt), str(out)], check=True,
                   timeout=120)
    return json.loads(out.read_text())


@pytest.mark.jax
def test_the_orbax_example_resumes_in_a_new_process(daemon, tmp_path: Path) -> None:
    setup, train, resume = _doc_blocks()
    ckpt = tmp_path / "ckpt"
    first = _run([setup, train], daemon.url, ckpt, tmp_path / "first.json")
    steps = len(first["seen"])
    latest = steps // 100 * 100
    assert 100 <= latest < steps  # the latest checkpoint is mid-epoch
    assert sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit())[-1] == latest
    second = _run([setup, resume], daemon.url, ckpt, tmp_path / "second.json")
    # The restarted process yields exactly the batches the first one yielded after the
    # checkpoint, and trains on from the same model to the same model.
    assert second["seen"] == first["seen"][latest:]
    assert second["steps"] == steps
    np.testing.assert_allclose(second["w"], first["w"], rtol=1e-5)


def _assert_same(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])
