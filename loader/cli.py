"""The `tether` command. Each subcommand lives in the package that owns it:

    serve, results, demo  -> tether.daemon (needs `pip install tether[daemon]`)
    ls, status   -> tether.inspect (the base install)
    bench        -> tether.bench

A subcommand module has `register(subparsers)`, which adds its parser and
sets `run` to a function of the parsed args returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .wire.errors import TetherError

_COMMANDS = {
    "serve": ("tether.daemon.cli", "daemon"),
    "results": ("tether.daemon.cli", "daemon"),
    "demo": ("tether.bench.demo", "daemon"),
    "ls": ("tether.inspect", None),
    "status": ("tether.inspect", None),
    "bench": ("tether.bench.cli", "daemon"),
}


def _missing(command: str, extra: str | None, error: ImportError):
    def run(args: argparse.Namespace) -> int:
        hint = (f"it needs the {extra} extra: pip install 'tether[{extra}]'" if extra
                else "reinstall tether")
        print(f"tether {command} is not available in this install ({error}); {hint}",
              file=sys.stderr)
        return 2

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tether",
        description="Stream datasets from this machine into a JAX training loop on a remote GPU.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    registered: set[str] = set()
    for command, (module_name, extra) in _COMMANDS.items():
        if module_name in registered:
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            hint = f"; needs pip install 'tether[{extra}]'" if extra else ""
            sub = subparsers.add_parser(command, help=f"(unavailable: {exc.name} missing{hint})",
                                        add_help=False)
            # Whatever follows (paths, flags) is taken, so the answer is what to install,
            # not "unrecognized arguments".
            sub.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
            sub.set_defaults(run=_missing(command, extra, exc))
            continue
        module.register(subparsers)
        registered.add(module_name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except TetherError as exc:
        print(f"tether {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
