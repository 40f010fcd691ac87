"""The README's install lines work as pasted: Tether is not on the package
index, so no line may install it from there, and the wheel the README names
is the one `pip wheel` builds from this folder."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tether.wire import VERSION

ROOT = Path(__file__).resolve().parents[2]
WHEEL = f"tether-{VERSION}-py3-none-any.whl"


def _install_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.search(r"pip install", line)]


def test_no_install_line_asks_the_package_index_for_tether() -> None:
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
                ROOT / "docs" / "colab.ipynb"]:
        for line in _install_lines(doc.read_text()):
            # from a folder (-e ., .[...]), a wheel file, or a git URL: never bare `tether`
            from_index = r"pip install (-q )?['\"]?tether(\[[a-z0-9,]+\])?(?!\s*@)['\"]?(\s|$)"
            assert not re.search(from_index, line), f"{doc.name}: {line.strip()}"


def test_the_wheel_the_readme_names_is_the_one_built_here(tmp_path: Path) -> None:
    # the build backend pyproject.toml names, as the README's environment has it
    pytest.importorskip("setuptools", minversion="68")
    pytest.importorskip("wheel")
    readme = (ROOT / "README.md").read_text()
    assert f"dist/{WHEEL}[fast]" in readme and f"/content/{WHEEL}[fast]" in readme
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, timeout=300,
                   capture_output=True)
    assert [p.name for p in tmp_path.glob("*.whl")] == [WHEEL]
