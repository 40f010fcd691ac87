"""`tether serve PATH...`: serve datasets until SIGINT or SIGTERM; `tether results`.

`serve` prints exactly one line on stdout, the connect URL, once it is
ready; all else goes to stderr through `logging`. The URL carries the token
and the certificate fingerprint: whoever holds it can read the datasets.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from tether.wire.errors import TetherError
from tether.wire.images.decode import MAX_PIXELS, set_max_pixels
from tether.wire.sizes import size_argument

from . import posix
from .prepare.preparation import Preparation, is_database_url
from .serve.results import DEFAULT_MAX_BYTES, ResultsSink, safe_display
from .serve.server import Daemon, DaemonConfig, default_state_dir
from .serve.tunnel import DEFAULT_CAP as DEFAULT_TUNNEL_CAP
from .serve.tunnel import KINDS as TUNNELS

log = logging.getLogger(__name__)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


TOKEN_VARIABLE = "TETHER_TOKEN"

# gRPC C-core's lines, absl style: "I1127 21:15:33.482971   17324 file.cc:2563] text".
_NATIVE_LINE = re.compile(r"([DIWEF])\d{4} [\d:.]+\s+\d+ ([^\]]+)\] ?(.*)")
_NATIVE_LEVELS = {"D": logging.DEBUG, "I": logging.INFO, "W": logging.WARNING,
                  "E": logging.ERROR, "F": logging.CRITICAL}
_GRPC_VERBOSITY = {"debug": "DEBUG", "info": "INFO", "warning": "ERROR", "error": "ERROR"}


def _route_native_stderr() -> Callable[[], None]:
    """Send what native code (gRPC's C core) writes on fd 2 through `logging`.

    fd 2 becomes a pipe read by a thread that logs each line as `grpc.core`
    at the line's own level, so `--log-level` filters it and it has our format;
    Python's own stderr keeps the original descriptor.
    """
    original = os.dup(2)
    sys.stderr = os.fdopen(original, "w", buffering=1, encoding="utf-8", errors="replace")
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    core = logging.getLogger("grpc.core")

    def pump() -> None:
        with os.fdopen(read_end, "r", encoding="utf-8", errors="replace") as lines:
            for line in lines:
                line = line.rstrip()
                match = _NATIVE_LINE.match(line)
                if match:
                    core.log(_NATIVE_LEVELS[match[1]], "%s %s", match[2], match[3])
                elif line:
                    core.warning("%s", line)

    pumping = threading.Thread(target=pump, name="tether-native-log", daemon=True)
    pumping.start()

    def restore() -> None:
        """Put fd 2 back and let the pump finish: a daemon thread still logging
        while the interpreter shuts down makes Python abort (SIGABRT)."""
        sys.stderr.flush()
        os.dup2(sys.stderr.fileno(), 2)  # the pipe's last write end closes: the pump ends
        pumping.join(timeout=5)

    return restore


def _given_token(args: argparse.Namespace) -> str | None:
    """The token of this run from --token-file or TETHER_TOKEN, else None (the kept one).

    Never from the command line: arguments are visible to every user in `ps`.
    ValueError for a file others can read, or with nothing in it.
    """
    if args.token is not None:
        raise ValueError(f"--token on the command line is visible to every user in `ps`; put "
                         f"the token in the {TOKEN_VARIABLE} environment variable or in a file "
                         "only you can read and pass --token-file FILE")
    if args.token_file is not None:
        path = args.token_file
        mode = path.stat().st_mode
        if mode & 0o077:
            raise ValueError(f"--token-file {path} is readable by others (mode "
                             f"{mode & 0o777:o}); chmod 600 it")
        token = path.read_text().strip()
        if not token:
            raise ValueError(f"--token-file {path} is empty")
        return token
    return os.environ.get(TOKEN_VARIABLE) or None


def _serve(args: argparse.Namespace) -> int:
    refused = posix.refusal()
    if refused:  # (native Windows: one line, before anything it lacks is called)
        print(refused, file=sys.stderr)
        return 2
    # C-core reads its verbosity when it starts (the first server or channel).
    os.environ.setdefault("GRPC_VERBOSITY", _GRPC_VERBOSITY[args.log_level])
    restore_stderr = _route_native_stderr()
    try:
        return _serve_logged(args)
    finally:
        restore_stderr()


def _serve_logged(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.paths and not args.awaiting:
        print("tether serve: give at least one PATH: a data file or folder "
              "(docs/datasets.md), or postgresql://USER@HOST/DB", file=sys.stderr)
        return 2
    try:
        token = _given_token(args)
        _check_dask(args)
        set_max_pixels(args.max_image_pixels)
    except (OSError, ValueError) as exc:
        print(f"tether serve: {exc}", file=sys.stderr)
        return 2
    if args.insecure and args.tunnel:
        print("tether serve: --insecure with --tunnel would put the token and the data in "
              "plain text on the internet; refused. Drop --insecure (--tunnel ngrok keeps TLS "
              "end to end)", file=sys.stderr)
        return 2
    if args.insecure:
        where = ("any user or program on this machine" if _is_loopback(args.host)
                 else f"EVERYONE on the networks {args.host} is reachable from, and any user "
                      "or program on this machine")
        log.warning("--insecure: no TLS. Traffic, token included, is readable by %s; use it "
                    "only on loopback or a network you trust", where)
    try:
        daemon = Daemon(DaemonConfig(
            paths=args.paths, host=args.host, port=args.port, state_dir=args.state_dir,
            encode_workers=args.workers, token=token, new_token=args.new_token,
            insecure=args.insecure,
            tunnel=args.tunnel, tunnel_cap=args.tunnel_cap, results_dir=args.results_dir,
            shares=tuple(args.share),
            max_upload=args.max_upload,
            follow_symlinks=args.follow_symlinks, images_column=args.images,
            preparation=Preparation(sql=tuple(args.sql), transforms=tuple(args.transform),
                                    refresh=args.refresh, allow_sql=args.allow_sql,
                                    dask=args.dask, awaited=tuple(args.awaiting)),
            max_memory=args.max_memory,
            stall_seconds=args.stall_timeout))
        url = daemon.start()
    except (OSError, ValueError) as exc:
        print(f"tether serve: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(url, flush=True)
    while not stop.wait(0.5):
        if args.stop_with and os.getppid() != args.stop_with:  # tether.serve's kernel died
            log.info("the process that started this daemon (%d) has ended", args.stop_with)
            break
    log.info("stopping")
    daemon.stop()
    _exit_now(0)
    return 0  # not reached


def _check_dask(args: argparse.Namespace) -> None:
    if not args.dask:
        return
    if not args.transform:
        raise ValueError(f"--dask {args.dask} runs --transform functions on that cluster, and "
                         "none was given")
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise ValueError("--dask needs Dask's distributed scheduler here: "
                         "pip install 'tether[dask]'") from None


def _exit_now(code: int) -> None:
    """End the stopped daemon's process here, skipping the interpreter's teardown:
    native threads of pyarrow and gRPC still winding down there have aborted it
    after a clean stop ("terminate called without an active exception", -6)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _results(args: argparse.Namespace) -> int:
    folder = args.results_dir or (args.state_dir or default_state_dir()) / "results"
    if not folder.is_dir():
        print(f"no results yet ({folder} does not exist)", file=sys.stderr)
        return 0
    rows = list(ResultsSink(folder).listing())
    for line in results_tree(rows):
        print(line)
    print(f"{len(rows)} result(s) in {folder}", file=sys.stderr)
    return 0


def results_tree(rows: list[tuple[str, int, float]]) -> Iterator[str]:
    """The results as a tree: each folder once, its files indented under it, each
    with its size and modification time (what client.list() gives the GPU side)."""
    shown: set[str] = set()
    for name, size, mtime in sorted(rows):
        parts = name.split("/")
        for depth, part in enumerate(parts[:-1]):
            folder = "/".join(parts[:depth + 1])
            if folder not in shown:
                shown.add(folder)
                yield f"{'  ' * depth}{safe_display(part)}/"
        when = datetime.datetime.fromtimestamp(mtime).strftime("%Y-%m-%d %H:%M:%S")
        label = f"{'  ' * (len(parts) - 1)}{safe_display(parts[-1])}"
        yield f"{label:<48} {size:>14,}  {when}"


def _path_or_database(text: str) -> Path | str:
    """A served path, or a database server's URL (kept as text), without a
    password: one on the command line is visible in `ps` for the daemon's
    life, as a token would be (--token is refused for the same reason)."""
    if not is_database_url(text):
        return Path(text)
    from .sources.postgres import has_password, redact

    if has_password(text):
        raise argparse.ArgumentTypeError(
            f"{redact(text).partition('?')[0]}: a password in the URL stays visible in the "
            "process list (ps) while the daemon runs; give it in PGPASSWORD, in ~/.pgpass or a "
            "passfile= parameter, or serve from Python: tether.serve(URL) takes it there")
    return text


def _named(text: str) -> tuple[str, str]:
    """NAME=VALUE, split at the first '='."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


class _HelpFormatter(argparse.HelpFormatter):
    """Room for the longest flag, so that each flag's help stays on its line."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=28)


SERVE_DESCRIPTION = (
    "Serve the datasets under PATH... and print the connect URL on stdout. By default over "
    "TLS with a self-signed certificate pinned by the URL, and a token every call must carry; "
    "both are kept in the state folder. docs/datasets.md lists the formats, docs/security.md "
    "the defences.")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """`tether serve`'s arguments, in groups, each flag with one line and its default."""
    # (none only for tether.serve(train=ddf), which passes --awaiting instead)
    parser.add_argument("paths", nargs="*", type=_path_or_database, metavar="PATH",
                        help="a data file or folder (docs/datasets.md), or postgresql://USER@HOST/DB")
    _reach_arguments(parser.add_argument_group("reach"))
    _security_arguments(parser.add_argument_group("security"))
    _data_arguments(parser.add_argument_group("data"))
    _limit_arguments(parser.add_argument_group("limits"))
    _preparation_arguments(parser.add_argument_group("preparation"))
    _daemon_arguments(parser.add_argument_group("this daemon"))


def _reach_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--host", default="127.0.0.1",
                       help="address to listen on; 0.0.0.0 for every interface (%(default)s)")
    group.add_argument("--port", type=int, default=0,
                       help="port; 0: the last run's, else any free one (%(default)s)")
    group.add_argument("--tunnel", choices=TUNNELS, default=None, metavar="KIND",
                       help=f"{' or '.join(TUNNELS)}: reach it from anywhere (off)")


def _security_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--token", default=None, help=argparse.SUPPRESS)  # refused: see ps
    group.add_argument("--token-file", type=Path, default=None, metavar="FILE",
                       help=f"this run's token from FILE (mode 600), or ${TOKEN_VARIABLE} (kept)")
    group.add_argument("--new-token", action="store_true",
                       help="replace the kept token: old URLs stop working (off)")
    group.add_argument("--insecure", action="store_true",
                       help="plain gRPC, no TLS: loopback or a trusted network only (off)")


def _data_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--images", default=None, metavar="COLUMN",
                       help="CSV/Parquet files are manifests: COLUMN holds image paths (off)")
    group.add_argument("--sql", action="append", default=[], type=_named, metavar="NAME=QUERY",
                       help="serve QUERY's result (DuckDB) as dataset NAME (repeatable)")
    group.add_argument("--transform", action="append", default=[], type=_named,
                       metavar="NAME=MOD:FN",
                       help="serve dataset NAME through your function FN (repeatable)")
    group.add_argument("--follow-symlinks", action="store_true",
                       help="serve what links point at outside the folders (off: skipped)")


def _limit_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--max-memory", type=size_argument, default=None, metavar="SIZE",
                       help="all streams' windows together (¼ of RAM, at most 2GiB)")
    group.add_argument("--max-image-pixels", type=int, default=MAX_PIXELS, metavar="N",
                       help=f"refuse larger images where the daemon decodes ({MAX_PIXELS:,})")
    group.add_argument("--stall-timeout", type=float, default=None, metavar="S",
                       help="cancel a stream whose client reads nothing this long (120)")
    group.add_argument("--max-upload", type=size_argument, default=DEFAULT_MAX_BYTES,
                       metavar="SIZE",
                       help=f"largest upload, e.g. 500MB or 20GiB "
                            f"({DEFAULT_MAX_BYTES / 2**30:g}GiB)")
    group.add_argument("--tunnel-cap", type=size_argument, default=DEFAULT_TUNNEL_CAP,
                       metavar="SIZE", help="warn at half and 90%% of this much tunnelled (1GB)")


def _preparation_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--refresh", action="store_true",
                       help="take new snapshots of queries and databases (off: reuse)")
    group.add_argument("--dask", default=None, metavar="ADDRESS",
                       help="run --transform on this Dask scheduler's workers (off: local)")
    group.add_argument("--allow-sql", action="store_true",
                       help="let loaders send read-only, limited SQL (off)")


def _daemon_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--state-dir", type=Path, default=None, metavar="DIR",
                       help=f"identity, caches and results ({default_state_dir()})")
    group.add_argument("--results-dir", type=Path, default=None, metavar="DIR",
                       help="where uploads land (STATE_DIR/results)")
    group.add_argument("--stop-with", type=int, default=0, help=argparse.SUPPRESS)
    # tether.serve(name=dask_collection): a snapshot its caller is writing.
    group.add_argument("--awaiting", type=_named, action="append", default=[],
                       help=argparse.SUPPRESS)
    group.add_argument("--share", type=_share, action="append", default=[],
                       metavar="NAME=PATH",
                       help="clients may download PATH as NAME/..., read-only (none)")
    group.add_argument("--workers", type=int, default=0, metavar="N",
                       help="threads reading and encoding shards; 0: one a core (%(default)s)")
    group.add_argument("--log-level", default="info", metavar="LEVEL",
                       choices=["debug", "info", "warning", "error"],
                       help="debug, info, warning or error (%(default)s)")


def serve_main(argv: list[str]) -> int:
    """`tether serve` alone, as `python -m tether.daemon` runs it (the spawned daemon)."""
    parser = argparse.ArgumentParser(prog="tether serve", description=SERVE_DESCRIPTION,
                                     formatter_class=_HelpFormatter)
    add_serve_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return _serve(args)
    except TetherError as exc:
        print(f"tether serve: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser("serve", help="serve datasets from this machine",
                                  description=SERVE_DESCRIPTION, formatter_class=_HelpFormatter)
    add_serve_arguments(serve)
    serve.set_defaults(run=_serve)

    results = subparsers.add_parser("results", help="list the results uploaded to this machine")
    results.add_argument("--results-dir", type=Path, default=None)
    results.add_argument("--state-dir", type=Path, default=None)
    results.set_defaults(run=_results)


def _share(text: str) -> tuple[str, Path]:
    """--share NAME=PATH: a folder clients may download from, as NAME/..."""
    try:
        name, path = _named(text)
    except argparse.ArgumentTypeError:
        name = path = ""
    folder = Path(path).expanduser()
    if not name or "/" in name or name.startswith(".") or not folder.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME=PATH, a plain name and an "
                                         "existing folder (e.g. models=./pretrained)")
    return name, folder
