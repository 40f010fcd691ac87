"""Names that differ only in case (or Unicode normalization) are one file on
macOS's and Windows' default disks. Uploads and shares refuse such twins on
every system, so none can land on, replace or read a file of another name
when the daemon runs on a Mac, and results copied there lose nothing.
Linux's disks tell the names apart, which is what lets these tests make the
twins that a case-insensitive disk would merge."""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

import tether
from tether.daemon.serve.files import SharedFiles, overlaps
from tether.daemon.serve.results import ResultsSink, UploadRefused
from tether.wire import rpc
from tether.wire.names import folded, twins, unsafe_here
from tether.wire.v1 import tether_pb2 as pb


def _store(sink: ResultsSink, name: str, data: bytes, **options) -> None:
    sink.store(name, len(data), [data], **options)


def test_an_upload_spelled_otherwise_than_an_existing_file_or_folder_is_refused(
        tmp_path: Path) -> None:
    sink = ResultsSink(tmp_path / "results")
    _store(sink, "run/model.bin", b"first")
    for name in ("run/Model.bin", "RUN/other.bin", "Run/model.bin"):
        with pytest.raises(UploadRefused, match="differs only in case"):
            _store(sink, name, b"second", overwrite=True)
    assert (tmp_path / "results" / "run" / "model.bin").read_bytes() == b"first"
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [".incoming", "run"]
    _store(sink, "run/model.bin", b"second", overwrite=True)  # its own spelling replaces it
    assert (tmp_path / "results" / "run" / "model.bin").read_bytes() == b"second"


def test_unicode_normalization_twins_are_refused_too(tmp_path: Path) -> None:
    sink = ResultsSink(tmp_path / "results")
    composed = unicodedata.normalize("NFC", "caf\u00e9.txt")
    _store(sink, composed, b"x")
    with pytest.raises(UploadRefused, match="differs only in case"):
        _store(sink, unicodedata.normalize("NFD", composed), b"y")  # one file on APFS


def test_a_folder_whose_files_differ_only_in_case_is_refused_and_nothing_appears(
        tmp_path: Path) -> None:
    sink = ResultsSink(tmp_path / "results")
    key = "ab" * 32
    files = ["ckpt/weights.bin", "CKPT/extra.bin"]
    for name in files:
        _store(sink, name, b"w", folder=key)
    with pytest.raises(UploadRefused, match="differ only in case"):
        sink.finish_folder(key, "step-1", files)
    assert not (tmp_path / "results" / "step-1").exists()
    _store(sink, "step-2", b"a file")
    _store(sink, "x.bin", b"w", folder="cd" * 32)
    with pytest.raises(UploadRefused, match="differs only in case"):  # a folder over a twin
        sink.finish_folder("cd" * 32, "STEP-2", ["x.bin"])
    assert (tmp_path / "results" / "step-2").read_bytes() == b"a file"


def test_the_client_refuses_such_a_folder_before_sending_a_byte(serve, npy_dataset,
                                                                tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "X.bin").write_bytes(b"1")
    (folder / "a" / "x.bin").write_bytes(b"2")
    daemon = serve(npy_dataset(10))
    with daemon.client() as client, pytest.raises(ValueError, match="differ only in case"):
        client.upload("ckpt", folder)
    assert not list((tmp_path / "state0").rglob("*.bin"))


def test_share_names_are_exact_and_uploads_may_not_take_one_by_case(serve, npy_dataset,
                                                                     tmp_path: Path) -> None:
    share = tmp_path / "pretrained"
    share.mkdir()
    (share / "w.bin").write_bytes(b"shared")
    daemon = serve(npy_dataset(10), args=("--share", f"models={share}"))
    with daemon.client() as client:
        for name in ("Models/w.bin", "MODELS/mine.txt"):
            with pytest.raises(tether.RequestError, match="shares read-only"):
                client.upload(name, b"mine")
        with pytest.raises(tether.DatasetNotFound):  # share names are spelled exactly
            client.download("Models/w.bin", tmp_path / "got")
        assert not (tmp_path / "got").exists()
        assert client.download("models/w.bin", tmp_path / "got").read_bytes() == b"shared"
    assert (share / "w.bin").read_bytes() == b"shared"


def test_two_shares_named_alike_are_refused(tmp_path: Path) -> None:
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
    with pytest.raises(ValueError, match="differ only in case"):
        SharedFiles(tmp_path / "results", {"models": tmp_path / "one",
                                           "Models": tmp_path / "two"})


def test_a_share_reaching_the_daemons_folder_by_another_spelling_overlaps(
        tmp_path: Path) -> None:
    """On macOS resolve() keeps case: ~/STATE is not rewritten to ~/state, yet it
    is that folder. Linux's second spelling of one folder is a link, left
    unresolved here as macOS leaves case."""
    state = tmp_path / "state"
    (state / "daemons").mkdir(parents=True)
    (tmp_path / "STATE").symlink_to(state)
    assert overlaps(tmp_path / "STATE", state)  # the same folder
    assert overlaps(tmp_path / "STATE" / "daemons", state)  # inside it
    assert overlaps(tmp_path, tmp_path / "STATE" / "daemons")  # holding it
    assert overlaps(tmp_path / "STATE", state / "not-yet")  # where it will be made
    (tmp_path / "beside").mkdir()
    assert not overlaps(tmp_path / "beside", state)
    assert not overlaps(state / "daemons", state / "results")  # neither exists above the other


def test_folding_keys_and_twins() -> None:
    assert folded("Model.BIN") == folded("model.bin")
    assert folded("stra\u00dfe") == folded("STRASSE")  # full case folding
    assert twins(["a/b", "a/c", "d"]) is None
    assert twins(["a/b", "A/c"]) == ("A", "a")
    assert twins(["x/y.bin", "x/Y.bin"]) == ("x/Y.bin", "x/y.bin")


def test_a_twin_made_while_an_upload_is_under_way_stops_it(tmp_path: Path) -> None:
    """Found by a review: the check ran before the bytes, the rename after them."""
    sink = ResultsSink(tmp_path / "results")

    def slowly() -> Iterator[bytes]:
        yield b"slow "
        _store(sink, "run/model.bin", b"first")  # meanwhile, over another connection
        yield b"upload"

    with pytest.raises(UploadRefused, match="differs only in case"):
        sink.store("run/Model.bin", 11, slowly(), overwrite=True)
    assert os.listdir(tmp_path / "results" / "run") == ["model.bin"]
    assert (tmp_path / "results" / "run" / "model.bin").read_bytes() == b"first"


def test_twins_already_on_a_linux_disk_each_keep_their_own_name(tmp_path: Path) -> None:
    sink = ResultsSink(tmp_path / "results")
    run = tmp_path / "results" / "run"
    run.mkdir()
    (run / "A.txt").write_bytes(b"upper")
    (run / "a.txt").write_bytes(b"lower")  # made by other means, before the rule
    _store(sink, "run/a.txt", b"new", overwrite=True)
    assert (run / "a.txt").read_bytes() == b"new" and (run / "A.txt").read_bytes() == b"upper"


def test_a_download_spelled_otherwise_is_not_served_the_other_file(tmp_path: Path) -> None:
    """On a Mac, opening run/MODEL.BIN would open run/model.bin."""
    sink = ResultsSink(tmp_path / "results")
    _store(sink, "run/model.bin", b"weights")
    files = SharedFiles(tmp_path / "results")
    for name in ("run/MODEL.BIN", "RUN/model.bin"):
        with pytest.raises(tether.DatasetNotFound, match="spelled otherwise"):
            files.open(name)
    handle, entry = files.open("run/model.bin")
    with handle:
        assert handle.read() == b"weights" and entry.name == "run/model.bin"


class ListingDaemon:
    """Answers `Files` with the names it is given: a daemon not to be trusted."""

    def __init__(self, names: list[str]) -> None:
        def files(request: pb.FilesRequest, context) -> pb.FilesResponse:
            return pb.FilesResponse(files=[pb.FileEntry(name=n, size=1) for n in names])

        handlers = {"Files": grpc.unary_unary_rpc_method_handler(
            files, request_deserializer=pb.FilesRequest.FromString,
            response_serializer=pb.FilesResponse.SerializeToString)}
        self.server = grpc.server(ThreadPoolExecutor(2))
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(rpc.SERVICE_NAME, handlers),))
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.url = f"tether://127.0.0.1:{port}/?tls=off&token=t"


@pytest.mark.parametrize("names, why", [
    (["run/ok.bin", "run/../../outside.bin"], "'..'"),
    (["run/x/y.bin", "run/X/z.bin"], "differ only in case"),
])
def test_a_folder_download_keeps_to_its_folder_whatever_the_listing_says(
        tmp_path: Path, names, why) -> None:
    daemon = ListingDaemon(names)
    try:
        with tether.connect(daemon.url) as client, pytest.raises(tether.RequestError,
                                                                 match=why):
            client.download("run", tmp_path / "dest" / "run")
    finally:
        daemon.server.stop(None)
    assert not list(tmp_path.rglob("*.bin")) and not (tmp_path / "dest").exists()


def test_names_windows_reads_otherwise_are_refused_there_only(monkeypatch) -> None:
    assert unsafe_here("a:b") is None and unsafe_here("nul.txt") is None  # fine on Linux
    assert unsafe_here("..") and unsafe_here("a\x00b")
    monkeypatch.setattr(os, "altsep", "\\")  # what Windows' os module says
    for part in ("a:b", "x\\..", "NUL.txt", "com1", "name.", "name "):
        assert unsafe_here(part), part
    assert unsafe_here("weights.bin") is None
