"""The results folder's resumable uploads and folder staging (ResultsSink), on
disk without a daemon: a broken upload keeps its bytes under its identity and
resumes from them, in a new sink too (a daemon restart); a folder appears by
one rename; stale partial uploads go."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.daemon.serve.results import STALE_SECONDS, ResultsSink, UploadRefused
from tether.wire.errors import DataCorrupted

DATA = os.urandom(5 << 20)
SHA = hashlib.sha256(DATA).hexdigest()
KEY = "ab" * 32


class Cut(RuntimeError):
    pass


def _blocks(data: bytes, cut_after: int | None = None) -> Iterator[bytes]:
    for start in range(0, len(data), 1 << 20):
        if cut_after is not None and start >= cut_after:
            raise Cut("the connection broke")
        yield data[start:start + (1 << 20)]


def test_a_broken_upload_resumes_in_a_new_sink_sending_only_the_rest(tmp_path: Path) -> None:
    sink = ResultsSink(tmp_path / "results")
    with pytest.raises(Cut):
        sink.store("run/ckpt.bin", len(DATA), _blocks(DATA, cut_after=3 << 20), sha256=SHA)
    restarted = ResultsSink(tmp_path / "results")  # the daemon started again
    held = restarted.held("run/ckpt.bin", len(DATA), SHA)
    assert held == 3 << 20
    stored = restarted.store("run/ckpt.bin", len(DATA), _blocks(DATA[held:]), sha256=SHA,
                             offset=held)
    assert stored.sha256 == SHA
    assert (tmp_path / "results" / "run" / "ckpt.bin").read_bytes() == DATA
    assert restarted.held("run/ckpt.bin", len(DATA), SHA) == 0  # nothing left behind


def test_a_resume_from_the_wrong_offset_or_with_other_bytes_is_refused(tmp_path: Path) -> None:
    sink = ResultsSink(tmp_path / "results")
    with pytest.raises(Cut):
        sink.store("x.bin", len(DATA), _blocks(DATA, cut_after=2 << 20), sha256=SHA)
    with pytest.raises(UploadRefused, match="the daemon holds 2097152"):
        sink.store("x.bin", len(DATA), _blocks(DATA[1 << 20:]), sha256=SHA, offset=1 << 20)
    forged = bytearray(DATA)
    forged[-1] ^= 1
    with pytest.raises(DataCorrupted, match="do not match the sha256"):
        sink.store("x.bin", len(DATA), _blocks(bytes(forged)[2 << 20:]), sha256=SHA,
                   offset=2 << 20)
    assert sink.held("x.bin", len(DATA), SHA) == 0  # spoiled bytes are not kept
    assert not (tmp_path / "results" / "x.bin").exists()


def test_a_folder_appears_whole_by_one_rename(tmp_path: Path) -> None:
    sink = ResultsSink(tmp_path / "results")
    files = {"a.bin": b"1" * 10, "sub/b.bin": b"2" * 20, "sub/deeper/c.bin": b""}
    for name, data in files.items():
        sink.store(name, len(data), [data], sha256=hashlib.sha256(data).hexdigest(),
                   folder=KEY)
        assert not (tmp_path / "results" / "run").exists()
    with pytest.raises(UploadRefused, match="incomplete: 1 of its 4 files"):
        sink.finish_folder(KEY, "run/ckpt", [*files, "missing.bin"])
    stored = sink.finish_folder(KEY, "run/ckpt", list(files))
    assert stored.size == 30
    for name, data in files.items():
        assert (tmp_path / "results" / "run" / "ckpt" / name).read_bytes() == data
    with pytest.raises(UploadRefused, match="has no files uploaded yet"):
        sink.finish_folder(KEY, "run/ckpt", list(files))


def test_an_existing_folder_is_replaced_only_with_overwrite(tmp_path: Path) -> None:
    sink = ResultsSink(tmp_path / "results")
    for round_, data in enumerate((b"old", b"new")):
        sink.store("f.bin", 3, [data], sha256=hashlib.sha256(data).hexdigest(), folder=KEY)
        if round_:
            with pytest.raises(UploadRefused, match="exists; upload with overwrite=True"):
                sink.finish_folder(KEY, "ckpt", ["f.bin"])
        sink.finish_folder(KEY, "ckpt", ["f.bin"], overwrite=bool(round_))
    assert (tmp_path / "results" / "ckpt" / "f.bin").read_bytes() == b"new"


def test_stale_partial_uploads_are_removed(tmp_path: Path) -> None:
    sink = ResultsSink(tmp_path / "results")
    with pytest.raises(Cut):
        sink.store("x.bin", len(DATA), _blocks(DATA, cut_after=1 << 20), sha256=SHA)
    sink.store("f.bin", 1, [b"x"], sha256=hashlib.sha256(b"x").hexdigest(), folder=KEY)
    assert sink.clean_stale() == 0  # fresh: kept for a resume
    assert sink.clean_stale(now=time.time() + STALE_SECONDS + 60) == 2
    assert sink.held("x.bin", len(DATA), SHA) == 0


def test_upload_identities_are_checked(tmp_path: Path) -> None:
    sink = ResultsSink(tmp_path / "results")
    with pytest.raises(UploadRefused, match="not 64 hex digits"):
        sink.store("x", 1, [b"x"], sha256="../../etc")
    with pytest.raises(UploadRefused, match="whose key is not 64 hex digits"):
        sink.store("x", 1, [b"x"], sha256=SHA, folder="../x")
    with pytest.raises(UploadRefused, match="resumes without naming its content"):
        sink.store("x", 1, [b"x"], offset=1)


def test_tether_results_shows_a_tree_with_sizes_and_times() -> None:
    from tether.daemon.cli import results_tree

    lines = list(results_tree([("run/ckpt/a.bin", 1_000, 0.0), ("run/metrics.json", 20, 0.0),
                               ("top.txt", 3, 0.0), ("run/ckpt/\x1b[31m", 1, 0.0)]))
    assert [line.split()[0] for line in lines] == ["run/", "ckpt/", "\\x1b[31m", "a.bin",
                                                   "metrics.json", "top.txt"]
    assert lines[3].startswith("    a.bin") and "1,000" in lines[3]


def test_failed_folder_uploads_and_finished_folders_keep_the_entry_count_true(
        tmp_path: Path) -> None:
    """Found by a review: staging folders were uncounted when a failed upload removed
    them (the count went below zero), and finish_folder never checked the cap."""
    sink = ResultsSink(tmp_path / "results", max_entries=5)
    for attempt in range(5):
        with pytest.raises(UploadRefused, match="ended after"):
            sink.store(f"d/e/f/g{attempt}", 10, [b"abc"], sha256=SHA, folder=KEY)
    assert sink._entries == 0
    for index in range(6):
        sink.store(f"f{index}.bin", 1, [b"x"], sha256=hashlib.sha256(b"x").hexdigest(),
                   folder=KEY)
    with pytest.raises(UploadRefused, match="takes at most 5"):
        sink.finish_folder(KEY, "ckpt", [f"f{index}.bin" for index in range(6)])


def test_a_refused_resume_leaves_no_empty_partial(tmp_path: Path) -> None:
    sink = ResultsSink(tmp_path / "results")
    with pytest.raises(UploadRefused, match="the daemon holds 0"):
        sink.store("x.bin", len(DATA), _blocks(DATA[1 << 20:]), sha256=SHA, offset=1 << 20)
    assert not list((tmp_path / "results" / ".incoming").glob("*.partial"))


def test_the_internal_folder_is_refused_in_any_case() -> None:
    from tether.daemon.serve.results import safe_relative

    for name in (".incoming/x", ".INCOMING/x", ".Incoming/folders/k/x"):
        with pytest.raises(UploadRefused):
            safe_relative(name)


def test_what_sync_takes_for_temporary() -> None:
    from tether.results import _temporary

    for name in ("5.orbax-checkpoint-tmp-1733", "x.tmp", "y.partial", ".hidden",
                 "w.bin.tether-partial", "w.bin.tether-partial.sha256"):
        assert _temporary(name), name
    for name in ("5", "config.tmpl", "metrics.tmp.json", "ckpt.partially.json"):
        assert not _temporary(name), name
