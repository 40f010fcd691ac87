"""Fail if installing tether changed a package that was there before it.

Usage: same_packages.py BEFORE AFTER, two `pip freeze` outputs. Colab's packages
are what a user's other code was written against: `pip install 'tether[fast]'`
may add packages (crc32c, tether itself) but must not upgrade, downgrade or
remove one of them. Packages that must not be there at all (lz4) come after
`--absent`.
"""

from __future__ import annotations

import re
import sys


def versions(path: str) -> dict[str, str]:
    found = {}
    with open(path, encoding="utf-8") as lines:
        text = lines.read()
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, version = re.split(r"\s*(==| @ )\s*", line, maxsplit=1)
        found[re.sub(r"[-_.]+", "-", name).lower()] = version
    return found


def main(argv: list[str]) -> int:
    absent = argv[argv.index("--absent") + 1:] if "--absent" in argv else []
    before_path, after_path = argv[:2]
    before, after = versions(before_path), versions(after_path)
    changed = [f"{name}: {version} -> {after.get(name, 'removed')}"
               for name, version in sorted(before.items()) if after.get(name) != version]
    present = [f"{name}=={after[name]} must not be installed" for name in absent if name in after]
    for problem in changed + present:
        print(f"same_packages: {problem}", file=sys.stderr)
    added = ", ".join(sorted(set(after) - set(before))) or "none"
    print(f"same_packages: {len(before) - len(changed)} unchanged, added: {added}")
    return 1 if changed or present else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
