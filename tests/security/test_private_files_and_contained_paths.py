"""Issue 9, files: private caches and results, bounded logs, uploads that stay
inside their folder, and served folders whose links stay inside theirs."""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import stat
import threading
import zipfile
from pathlib import Path

import grpc
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

import tether
from tether.daemon.logsafe import RateLimited, clip
from tether.daemon.prepare.catalog import Catalog
from tether.daemon.serve.results import FREE_DISK_MARGIN, ResultsSink, UploadRefused, safe_display
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


# --- 8: uploads stay inside the results folder, fit on the disk, and say what they refuse --

def test_a_link_swapped_in_during_a_slow_upload_cannot_redirect_it(tmp_path: Path) -> None:
    results, outside = tmp_path / "results", tmp_path / "outside"
    outside.mkdir()
    sink = ResultsSink(results)
    sink.store("run/first.txt", 1, [b"1"])

    def slow_chunks():
        yield b"half"
        (results / "run").rename(results / "run.moved")  # a local attacker's swap
        (results / "run").symlink_to(outside)
        yield b"half"

    with contextlib.suppress(UploadRefused):
        sink.store("run/ckpt.bin", 8, slow_chunks())
    assert list(outside.iterdir()) == []


def test_concurrent_uploads_reserve_their_space(tmp_path: Path) -> None:
    sink = ResultsSink(tmp_path / "results", max_bytes=1 << 62)
    room = shutil.disk_usage(tmp_path).free - FREE_DISK_MARGIN
    size = int(room * 0.6)  # one fits, two do not
    started, release = threading.Event(), threading.Event()
    errors = []

    def waiting_chunks():
        started.set()
        release.wait(30)
        yield b""  # then ends short: nothing is written

    def first() -> None:
        try:
            sink.store("first.bin", size, waiting_chunks())
        except UploadRefused as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert started.wait(30)
        with pytest.raises(UploadRefused, match="does not fit"):
            sink.store("second.bin", size, [b""])
    finally:
        release.set()
        thread.join()
    assert errors and "ended after 0" in errors[0]
    with pytest.raises(UploadRefused, match="ended after 0"):  # the space is free again
        sink.store("third.bin", size, [b""])


def test_file_count_and_depth_are_capped(tmp_path: Path) -> None:
    sink = ResultsSink(tmp_path / "results", max_entries=4)
    sink.store("a/1", 1, [b"1"])
    sink.store("a/2", 1, [b"2"])
    sink.store("a/2", 1, [b"3"], overwrite=True)  # replacing adds nothing
    sink.store("3", 1, [b"3"])
    with pytest.raises(UploadRefused, match="holds 4 files and folders"):
        sink.store("4", 1, [b"4"])
    with pytest.raises(UploadRefused, match="deep"):
        ResultsSink(tmp_path / "r2").store("/".join("d" * 40), 1, [b"x"])


def test_a_refused_upload_removes_the_folders_it_made(tmp_path: Path) -> None:
    sink = ResultsSink(tmp_path / "results")
    sink.store("kept/old.txt", 1, [b"x"])
    with pytest.raises(UploadRefused, match="ended after"):
        sink.store("kept/new/deeper/x.bin", 10, [b"abc"])
    assert sorted(str(p.relative_to(tmp_path / "results"))
                  for p in (tmp_path / "results").rglob("*")) == [
        ".incoming", ".incoming/folders", "kept", "kept/old.txt"]


BAD_NAMES = ["a:b", "stream.txt:hidden", "CON", "con.txt", "run/NUL", "LPT1.log", "com9",
             "esc\x1b[2Jx", "c1\x85x", "c1\x9bx", "invoice\u202efdp.exe", "iso\u2066x",
             "run/" + "é" * 128, "x" * 256]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_names_terminals_and_windows_cannot_take_are_refused(serve, npy_dataset, tmp_path,
                                                             name) -> None:
    daemon = serve(npy_dataset(10))
    with daemon.client() as client, pytest.raises(tether.RequestError) as refused:
        client.upload(name, b"evil")
    assert str(tmp_path) not in str(refused.value)  # no absolute path of the daemon's
    results = tmp_path / "state0" / "results"
    assert sorted(p.name for p in results.iterdir()) == [".incoming"]


def test_names_shown_by_tether_results_are_escaped() -> None:
    assert safe_display("run-1/metrics.json") == "run-1/metrics.json"
    assert safe_display("x\x1b]0;pwned\x07\u202eexe") == "x\\x1b]0;pwned\\x07\\u202eexe"
    assert safe_display("a\nb") == "a\\nb"


def test_uploading_over_an_existing_name_is_refused(serve, npy_dataset, tmp_path) -> None:
    daemon = serve(npy_dataset(10))
    with daemon.client() as client:
        client.upload("run/ckpt.bin", b"first")
        with pytest.raises(tether.RequestError, match="exists.*overwrite=True"):
            client.upload("run/ckpt.bin", b"second")
    assert (tmp_path / "state0" / "results" / "run" / "ckpt.bin").read_bytes() == b"first"
    sink = ResultsSink(tmp_path / "state0" / "results")
    sink.store("run/ckpt.bin", 5, [b"third"], overwrite=True)
    assert (tmp_path / "state0" / "results" / "run" / "ckpt.bin").read_bytes() == b"third"


def test_overwrite_true_replaces(serve, npy_dataset, tmp_path) -> None:
    daemon = serve(npy_dataset(10))
    with daemon.client() as client:
        client.upload("ckpt.bin", b"first")
        client.upload("ckpt.bin", b"second", overwrite=True)
    assert (tmp_path / "state0" / "results" / "ckpt.bin").read_bytes() == b"second"


def test_a_str_that_is_not_a_path_says_so(serve, npy_dataset) -> None:
    daemon = serve(npy_dataset(10))
    with daemon.client() as client:
        with pytest.raises(FileNotFoundError, match="no file at .*pass bytes"):
            client.upload("notes.txt", "some text that is not a path")
        assert client.upload("notes.txt", b"some text").size == 9
