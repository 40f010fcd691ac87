"""Names that one system's disks take and another's read otherwise.

APFS and NTFS (by default) ignore case, and APFS ignores Unicode
normalization too: "Model.bin" and "model.bin", or "e\u0301" and "\u00e9",
are one file there. Uploads, shares and folder downloads refuse such twins
(docs/security.md), so that a name lands on, and reads, only its own file.
Windows also reads "\\" and ":" in a name, and reserves CON, NUL, COM1...
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable

WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$",
                    *(f"{port}{n}" for port in ("COM", "LPT")
                      for n in "123456789\u00b9\u00b2\u00b3")}


def folded(name: str) -> str:
    """The key under which a case-insensitive disk sees `name`."""
    return unicodedata.normalize("NFC", name).casefold()


def twins(paths: Iterable[str]) -> tuple[str, str] | None:
    """Two of the "/"-separated `paths`, or of the folders on their way, that
    differ only in case or normalization; None when there are none."""
    seen: dict[str, str] = {}
    for path in paths:
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            other = seen.setdefault(folded(prefix), prefix)
            if other != prefix:
                return prefix, other
    return None


def windows_reserved(part: str) -> bool:
    """Whether Windows takes `part` for a device ("nul.txt" is NUL)."""
    return part.split(".")[0].rstrip(" ").upper() in WINDOWS_RESERVED


def unsafe_here(part: str) -> str | None:
    """Why `part` of a "/"-separated name cannot be a file or folder's name
    below a folder of this system's, or None: every system takes "..", and
    Windows also reads backslashes, ':' (a stream), a device name and a
    trailing dot or space (dropped) otherwise."""
    if part in ("", ".", "..") or any(ord(ch) < 32 for ch in part):
        return "an empty, '.' or '..' part, or a control character"
    if os.sep == "\\" or os.altsep == "\\":  # (by what the system's paths are)
        if any(ch in "\\:" for ch in part) or part[-1] in ". ":
            return "a backslash, ':' or a trailing dot or space, which Windows reads otherwise"
        if windows_reserved(part):
            return f"{part.split('.')[0]!r}, a name Windows reserves"
    return None


__all__ = ["WINDOWS_RESERVED", "folded", "twins", "unsafe_here", "windows_reserved"]
