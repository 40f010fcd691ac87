"""What `tether serve` needs of the operating system, checked before it starts.

The daemon keeps uploads and downloads inside their folders with calls only
POSIX systems have: names opened relative to a folder's descriptor (dir_fd)
without following links (O_NOFOLLOW, O_DIRECTORY), and locks the kernel
drops when the process dies (fcntl). Linux and macOS have them all; native
Windows has none of them, and there the daemon runs inside WSL2
(docs/install.md). Checked by what the system has, not by its name, and
every daemon module stays importable without them, so the refusal is one
line, not a traceback.
"""

from __future__ import annotations

import importlib.util
import os

WSL_HINT = "on Windows, run it inside WSL2: see docs/install.md#windows"


class UnsupportedSystem(OSError):
    """This operating system cannot run the daemon (native Windows)."""


def missing() -> list[str]:
    """The calls the daemon needs that this system lacks (empty on Linux and macOS)."""
    lacking = []
    if importlib.util.find_spec("fcntl") is None:
        lacking.append("fcntl")
    lacking += [flag for flag in ("O_NOFOLLOW", "O_DIRECTORY") if not hasattr(os, flag)]
    relative = (os.open, os.stat, os.mkdir, os.rename, os.unlink, os.rmdir, os.link)
    if not all(call in os.supports_dir_fd for call in relative) \
            or os.listdir not in os.supports_fd:
        lacking.append("dir_fd")
    return lacking


def refusal(command: str = "tether serve") -> str | None:
    """Why `command` (which runs the daemon) cannot run here, in one line; None
    when it can."""
    lacking = missing()
    if not lacking:
        return None
    return (f"{command} needs Linux or macOS: this system lacks {', '.join(lacking)}, "
            f"which keep uploads and shared files inside their folders; {WSL_HINT}")


def require() -> None:
    """UnsupportedSystem, with refusal()'s line, where the daemon cannot run."""
    why = refusal()
    if why:
        raise UnsupportedSystem(why)


__all__ = ["WSL_HINT", "UnsupportedSystem", "missing", "refusal", "require"]
