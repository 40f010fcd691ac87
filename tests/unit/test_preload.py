"""tether.wire.preload: imports started ahead never hold a process at exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

STUCK = """
import sys, time
sys.path.insert(0, sys.argv[1])
from tether.wire import preload
preload.FINISH_SECONDS = 1.0
preload._CODEC_MODULES = ("never_done",)
preload.preload(codecs=True)
time.sleep(0.2)  # the import is under way
print("done")
"""


def test_an_import_that_never_ends_does_not_hold_the_exit(tmp_path: Path) -> None:
    """Seen once in CI: a loader printed its result, then hung at exit joining
    the preload thread until the test's 120 s ran out."""
    (tmp_path / "never_done.py").write_text("import time\ntime.sleep(3600)\n")
    done = subprocess.run([sys.executable, "-c", STUCK, str(tmp_path)], capture_output=True,
                          text=True, timeout=60)  # (a hang, not a speed: the exit waits 1 s)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"


def test_imports_under_way_finish_before_the_exit(tmp_path: Path) -> None:
    (tmp_path / "slow_but_done.py").write_text(
        "import time\ntime.sleep(0.5)\nopen(__file__ + '.imported', 'w').close()\n")
    code = STUCK.replace("never_done", "slow_but_done").replace("FINISH_SECONDS = 1.0",
                                                                "FINISH_SECONDS = 30.0")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "slow_but_done.py.imported").exists()
