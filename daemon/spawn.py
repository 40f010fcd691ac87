"""Run a server as a subprocess and read the address it prints: the daemon above all.

`tether serve` prints exactly one line on stdout, its URL, once it is ready,
and the bench's baseline servers print their port the same way. The demo,
the bench and the tests all start servers like that; doing it here, once,
gives them one start timeout, one way to stop (a signal, then a kill), and
errors that carry the daemon's own words.

A daemon's stderr goes to a temporary file, not a pipe: nobody reads a pipe
during a long run, and a full one would block the daemon at its next log line.
The file is read on demand (`stderr_text`, or `proc.stderr` as if a pipe).
POSIX only, like the daemon's signal handling: the file is unlinked at once.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


def stop_process(proc: subprocess.Popen, signum: int = signal.SIGTERM,
                 timeout: float = STOP_TIMEOUT_S) -> int:
    """Send `signum` unless `proc` has exited, wait up to `timeout` s, else kill; its exit code."""
    if proc.poll() is None:
        proc.send_signal(signum)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def start_module(module: str, *args: str, python: str = sys.executable,
                 stderr: int | IO | None = None, timeout: float | None = START_TIMEOUT_S,
                 env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """Start `python -u -m MODULE ARGS`; return it and the first line it prints on stdout.

    `stderr` is handed to Popen (None: this process's own); `env`, variables
    added to this process's environment for it. RuntimeError, with
    the process ended, when no line comes in `timeout` s (None: no limit) or
    it exits first.
    """
    proc = subprocess.Popen([python, "-u", "-m", module, *args], stdout=subprocess.PIPE,
                            stderr=stderr, text=True,
                            env={**os.environ, **env} if env else None)
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        ready = selector.select(timeout)
    line = proc.stdout.readline().strip() if ready else ""
    if line:
        return proc, line
    if not ready:
        proc.kill()
    code = stop_process(proc)
    proc.stdout.close()
    problem = (f"printed nothing in {timeout:g} s" if not ready
               else f"exited with code {code} before printing anything")
    raise RuntimeError(f"`python -m {module}` {problem}")


def _stderr_file() -> tuple[int, IO[str]]:
    """A temporary file for a child's stderr: the descriptor to hand it, and our reader."""
    fd, path = tempfile.mkstemp(prefix="tether-daemon-", suffix=".stderr")
    reader = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 (closed by close())
    os.unlink(path)
    return fd, reader


class DaemonProcess:
    """`tether serve PATHS --port 0 --state-dir STATE_DIR ARGS` in a subprocess, serving.

    `url` is what it printed, `proc` the process. Its stderr is captured (see
    the module's docstring) unless `capture_stderr` is false, which leaves it
    on this process's (the demo and the bench, watched from a terminal).
    `python` picks the interpreter, as tests of an old loader against a new
    daemon need. A context manager: leaving it stops the daemon.
    """

    def __init__(self, paths: Sequence[Path | str], state_dir: Path | str, *args: str,
                 python: str = sys.executable, timeout: float = START_TIMEOUT_S,
                 capture_stderr: bool = True, env: dict[str, str] | None = None) -> None:
        fd, self._stderr = _stderr_file() if capture_stderr else (None, None)
        try:
            self.proc, self.url = start_module(
                "tether.daemon", *map(str, paths), "--port", "0", "--state-dir", str(state_dir),
                *args, python=python, stderr=fd, timeout=timeout, env=env)
        except RuntimeError as exc:
            raise self._failed(str(exc)) from None
        finally:
            if fd is not None:
                os.close(fd)
        self.proc.stderr = self._stderr  # reads on from where it last stopped, as a pipe would
        if not self.url.startswith("tether://"):
            stop_process(self.proc)
            self.proc.stdout.close()
            raise self._failed(f"tether serve printed {self.url!r}, not a URL")

    def _failed(self, problem: str) -> RuntimeError:
        if self._stderr is None:
            return RuntimeError(f"{problem}; its stderr is above")
        text = self.stderr_text()
        self._stderr.close()
        return RuntimeError(f"{problem}; its stderr:\n{text}")

    def stderr_text(self) -> str:
        """Everything the daemon wrote on stderr so far ('' when not captured)."""
        if self._stderr is None:
            return ""
        fd = self._stderr.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode("utf-8", errors="replace")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> int:
        """Signal the daemon (SIGTERM: a clean stop), kill it after `timeout` s; its exit code."""
        return stop_process(self.proc, signum, timeout)

    def close(self) -> None:
        """Stop the daemon if it runs, and release its pipe and stderr file."""
        self.stop()
        self.proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()

    def __enter__(self) -> DaemonProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
