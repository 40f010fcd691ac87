"""`tether serve --help` in groups, each flag on one line with its default."""

from __future__ import annotations

import contextlib
import io

import pytest

from tether.cli import build_parser

GROUPS = ["reach", "security", "data", "limits", "preparation", "this daemon"]


@pytest.fixture
def help_text(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("COLUMNS", "100")  # a common terminal; argparse wraps at it
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    return out.getvalue()


def test_the_flags_are_grouped_in_order(help_text: str) -> None:
    titles = [line[:-1] for line in help_text.splitlines() if line.endswith(":")
              and not line.startswith(" ")]
    assert titles == ["positional arguments", "options", *GROUPS]
    sections = dict(zip(titles, help_text.split("\n\n")[-len(titles):], strict=True))
    assert "--tunnel" in sections["reach"] and "--token-file" in sections["security"]
    assert "--sql" in sections["data"] and "--max-memory" in sections["limits"]
    assert "--allow-sql" in sections["preparation"]


def test_each_flag_has_one_line_and_says_its_default(help_text: str) -> None:
    flags = [line for line in help_text.splitlines() if line.startswith("  --")]
    assert len(flags) >= 18
    for line in flags:
        assert "  " in line.strip(), f"the help of {line.split()[0]} wrapped to a second line"
        assert line.rstrip().endswith(")"), f"{line.split()[0]} names no default"
    assert "--token " not in help_text  # refused on the command line: not offered
