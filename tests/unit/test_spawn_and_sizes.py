"""One size parser (tether.wire.sizes); one way to start a daemon (tether.daemon.spawn)."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

import pytest

from tether.cli import build_parser
from tether.daemon.spawn import start_module, stop_process
from tether.wire.sizes import parse_size, size_argument


@pytest.mark.parametrize(("text", "expected"), [
    ("10G", 10_000_000_000),
    ("10GB", 10_000_000_000),
    ("10 gb", 10_000_000_000),
    ("512MiB", 512 * 2**20),
    ("512mib", 512 * 2**20),
    ("1.5K", 1500),
    ("1.5KiB", 1536),
    ("2T", 2 * 10**12),
    ("1TiB", 2**40),
    ("4096", 4096),
    ("0", 0),
    (" 7 ", 7),
])
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "", "-1", "1.2.3", "1e9", "GB", "10 G B", "10Gi", "5X"])
def test_a_bad_size_says_what_a_good_one_looks_like(text: str) -> None:
    with pytest.raises(ValueError, match="500MB") as caught:
        parse_size(text)
    assert repr(text) in str(caught.value) and "MiB" in str(caught.value)
    with pytest.raises(argparse.ArgumentTypeError, match="500MB"):
        size_argument(text)


def test_serve_max_upload_takes_both_kinds_of_unit(tmp_path: Path) -> None:
    parser = build_parser()
    assert parser.parse_args(["serve", str(tmp_path), "--max-upload", "10GB"]).max_upload \
        == 10_000_000_000
    assert parser.parse_args(["serve", str(tmp_path), "--max-upload", "2GiB"]).max_upload == 2**31


def test_serve_refuses_a_max_upload_that_is_not_a_size(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["serve", str(tmp_path), "--max-upload", "lots"])
    assert exited.value.code == 2
    assert "--max-upload: not a size: 'lots'" in capsys.readouterr().err


def test_bench_size_uses_the_same_parser() -> None:
    args = build_parser().parse_args(["bench", "--size", "1.5GB"])
    assert args.size == 1_500_000_000






def test_start_module_returns_the_first_line_or_says_why_not(tmp_path: Path,
                                                             monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # `python -m` finds these modules in its working folder
    (tmp_path / "prints_a_port.py").write_text(
        "import time; print(4321); print('more'); time.sleep(60)\n")
    (tmp_path / "fails.py").write_text("raise SystemExit(3)\n")
    (tmp_path / "silent.py").write_text("import time; time.sleep(60)\n")
    proc, line = start_module("prints_a_port")
    assert line == "4321"
    assert stop_process(proc) == -signal.SIGTERM  # still serving, until signalled
    proc.stdout.close()
    with pytest.raises(RuntimeError, match="exited with code 3 before printing"):
        start_module("fails")
    with pytest.raises(RuntimeError, match="printed nothing in 0.5 s"):
        start_module("silent", timeout=0.5)
