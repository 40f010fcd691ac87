"""The bench's server CPU is measured with the kernel's own clock for the
process, in nanoseconds: a few milliseconds of work are counted as such.

Found flaky in `.ci/run`: `/proc/PID/stat` counts in clock ticks (10 ms), so
a transfer costing a few milliseconds of server CPU measured 0 unless a tick
happened to fall inside it."""

from __future__ import annotations

import subprocess
import sys

from tether.bench.measure import process_cpu_seconds

# Says it is ready, waits for a line, burns about 3 ms of CPU, prints how much, and waits again.
BURNER = """
import sys, time
print("ready", flush=True)
sys.stdin.readline()
start = time.process_time()
while time.process_time() - start < 0.003:
    pass
print(time.process_time() - start, flush=True)
sys.stdin.readline()
"""


def test_milliseconds_of_another_process_cpu_are_counted() -> None:
    burner = subprocess.Popen([sys.executable, "-c", BURNER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert burner.stdout.readline() == "ready\n"  # its start-up is over
        before = process_cpu_seconds(burner.pid)
        burner.stdin.write("go\n")
        burner.stdin.flush()
        burned = float(burner.stdout.readline())
        measured = process_cpu_seconds(burner.pid) - before
    finally:
        burner.stdin.write("end\n")
        burner.stdin.close()
        burner.wait(timeout=30)
    # At least what it burned, at most that and the cost of reading and printing a line.
    assert burned * 0.95 <= measured < burned + 0.004, (burned, measured)
