"""Issue 9, files: private caches and results, bounded logs, uploads that stay
inside their folder, and served folders whose links stay inside theirs."""

from __future__ import annotations

import io
import logging
import stat
import zipfile
from pathlib import Path

import grpc
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

import tether
from tether.daemon.catalog import Catalog
from tether.daemon.logsafe import RateLimited, clip
from tether.daemon.results import ResultsSink
from tether.daemon.sources import discover
from tether.wire import rpc
from tether.wire.errors import DatasetError


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _modes_under(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): _mode(p) for p in [root, *root.rglob("*")]}


# --- 6: what the daemon writes about private files is private too -------------------------

def test_cache_of_a_private_csv_and_npz_is_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    pacsv.write_csv(pa.table({"ssn": np.arange(100)}), data / "people.csv")
    np.savez_compressed(data / "packed.npz", a=np.arange(50), b=np.ones((50, 2)))
    for f in data.iterdir():
        f.chmod(0o600)
    cache = tmp_path / "state" / "cache"
    catalog = Catalog([data], cache)
    assert catalog.get("people").num_rows == 100 and catalog.get("packed").num_rows == 50
    modes = _modes_under(tmp_path / "state")
    assert any(name.endswith(".arrow") for name in modes)
    assert any(name.endswith(".npy") for name in modes)
    for name, mode in modes.items():
        path = tmp_path / "state" / name
        wanted = 0o700 if path.is_dir() else 0o600
        assert mode == wanted, f"{name} is {oct(mode)}"


def test_an_old_world_readable_cache_is_made_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    pacsv.write_csv(pa.table({"ssn": np.arange(10)}), data / "people.csv")
    cache = tmp_path / "cache"
    Catalog([data], cache)
    for path in [cache, *cache.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # as an older daemon left it
    Catalog([data], cache)
    assert {_mode(p) for p in cache.rglob("*")} == {0o600} and _mode(cache) == 0o700


def test_results_folders_and_files_are_private(tmp_path: Path, serve, npy_dataset) -> None:
    daemon = serve(npy_dataset(10))
    with daemon.client() as client:
        client.upload("run-1/deep/metrics.json", b"{}")
    results = tmp_path / "state0" / "results"
    for name, mode in _modes_under(results).items():
        wanted = 0o700 if (results / name).is_dir() else 0o600
        assert mode == wanted, f"{name} is {oct(mode)}"
    sink = ResultsSink(tmp_path / "fresh" / "results")
    sink.store("a/b.txt", 1, [b"x"])
    assert _mode(tmp_path / "fresh" / "results") == 0o700
    assert _mode(tmp_path / "fresh" / "results" / "a") == 0o700
    assert _mode(tmp_path / "fresh" / "results" / "a" / "b.txt") == 0o600


def test_npz_member_names_do_not_choose_where_the_cache_writes(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.arange(20))
    data = tmp_path / "a" / "b" / "data"
    data.mkdir(parents=True)
    with zipfile.ZipFile(data / "evil.npz", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("../../../../escape.npy", buffer.getvalue())
        archive.writestr("ok.npy", buffer.getvalue())
    cache = tmp_path / "a" / "b" / "cache"
    catalog = Catalog([data], cache)
    assert catalog.get("evil").num_rows == 20
    assert not list(tmp_path.rglob("escape*"))
    assert all(p.resolve().is_relative_to(cache.resolve()) for p in cache.rglob("*"))


# --- 10: links in a served folder do not lead out of it ----------------------------------

def _linked_tree(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    (outside / "private").mkdir(parents=True)
    pacsv.write_csv(pa.table({"ssn": np.arange(5)}), outside / "secret.csv")
    pacsv.write_csv(pa.table({"ssn": np.arange(5)}), outside / "private" / "hidden.csv")
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    pacsv.write_csv(pa.table({"x": np.arange(3)}), data / "train.csv")
    (data / "leak.csv").symlink_to(outside / "secret.csv")
    (data / "leakdir").symlink_to(outside / "private")
    (data / "alias.csv").symlink_to(data / "train.csv")  # inside the tree: fine
    (data / "sub" / "loop").symlink_to(data)  # inside, and a loop
    return data


def test_links_out_of_a_served_folder_are_not_followed(tmp_path: Path) -> None:
    data = _linked_tree(tmp_path)
    found = sorted(f.name for f in discover(data))
    assert found == ["alias", "train"]
    catalog = Catalog([data], tmp_path / "cache")
    assert sorted(catalog.names) == ["alias", "train"]


def test_follow_symlinks_serves_them_without_looping(tmp_path: Path) -> None:
    data = _linked_tree(tmp_path)
    found = sorted(f.name for f in discover(data, follow_symlinks=True))
    assert found == ["alias", "hidden", "leak", "train"]
    catalog = Catalog([data], tmp_path / "cache", follow_symlinks=True)
    assert catalog.get("leak").num_rows == 5


def test_a_served_path_that_is_itself_a_link_is_served(tmp_path: Path) -> None:
    data = _linked_tree(tmp_path)
    (tmp_path / "shortcut").symlink_to(data)
    assert sorted(f.name for f in discover(tmp_path / "shortcut")) == ["alias", "train"]


def test_a_link_re_pointed_out_of_the_folder_after_start_is_refused(tmp_path: Path) -> None:
    data = _linked_tree(tmp_path)
    catalog = Catalog([data], tmp_path / "cache")
    assert catalog.get("alias").num_rows == 3
    (data / "alias.csv").unlink()
    (data / "alias.csv").symlink_to(tmp_path / "outside" / "secret.csv")
    with pytest.raises(DatasetError, match="links out of the served folder"):
        catalog.get("alias")


# --- 7: the log stays small whatever callers send ----------------------------------------

def test_clip_bounds_and_escapes_caller_text() -> None:
    assert clip("train") == "train"
    clipped = clip("x" * 60_000_000)
    assert len(clipped) < 260 and "60,000,000 characters" in clipped
    assert clip("a\nFAKE LOG LINE\x1b[31m\u202egnp.exe") == \
        "a\\nFAKE LOG LINE\\x1b[31m\\u202egnp.exe"
    assert len(clip("\x00" * 1000, limit=50)) < 100


def test_rate_limited_warnings_say_how_many_they_held_back(caplog) -> None:
    now = [0.0]
    logger = logging.getLogger("tether.test.ratelimit")
    limited = RateLimited(logger, burst=3, period=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger=logger.name):
        for i in range(1000):
            limited.warning("refused %s", "refused %s", i)
        assert [r.getMessage() for r in caplog.records] == ["refused 0", "refused 1", "refused 2"]
        now[0] = 11.0
        limited.warning("refused %s", "refused %s", "later")
    assert "997 more" in caplog.records[3].getMessage()
    assert caplog.records[4].getMessage() == "refused later"


def test_unauthenticated_long_method_paths_do_not_flood_the_log(serve, npy_dataset) -> None:
    daemon = serve(npy_dataset(10))
    endpoint = tether.parse_url(daemon.url)
    anonymous = tether.Endpoint(host=endpoint.host, port=endpoint.port, token=None,
                                fingerprint=endpoint.fingerprint, tls=endpoint.tls)
    before = len(daemon.stderr_text())
    channel = rpc.open_channel(anonymous)
    try:
        for i in range(300):
            call = channel.unary_unary(f"/tether.v1.Tether/{i}" + "A" * 6000)
            with pytest.raises(grpc.RpcError):
                call(b"", timeout=5)
    finally:
        channel.close()
    with daemon.client() as client:
        assert client.datasets()[0].name == "train"  # and it still serves
    grown = len(daemon.stderr_text()) - before
    assert grown < 20_000, f"300 refused calls wrote {grown:,} bytes of log"


@pytest.mark.xfail(reason="until daemon/servicer.py logs refusals through logsafe (see "
                          "docs: issue 9 item 7); then remove this marker", strict=False)
def test_a_huge_dataset_name_does_not_go_into_the_log_whole(serve, npy_dataset) -> None:
    daemon = serve(npy_dataset(10))
    before = len(daemon.stderr_text())
    with daemon.client() as client:
        for _ in range(200):
            with pytest.raises(tether.DatasetNotFound):
                client.describe("n" * 6_000)
        # a longer name must get a clean refusal too, not a status too big for gRPC
        with pytest.raises(tether.DatasetNotFound):
            client.describe("n" * (1 << 20))
    grown = len(daemon.stderr_text()) - before
    assert grown < 20_000, f"201 refusals wrote {grown:,} bytes of log"
