"""`tether.serve(...)`: the daemon started from Python (a notebook, a script,
`python -c`), serving files and databases like `tether serve` and, under
their keyword names, tables and arrays that live in memory.

In-memory objects are written once into the state folder as snapshots,
named by their content's SHA-256, so the daemon memory-maps them (no second
copy in memory), the notebook's object may change afterwards without
changing what streams, and serving the same content again reuses its
snapshot (same version: loaders' caches and states stay valid):

- tables (pandas and polars DataFrames, pyarrow Tables, RecordBatchReaders
  and Datasets) become an Arrow IPC file, every type and null kept;
- a dict of equal-length numpy arrays becomes a folder of `.npy` columns,
  any shape;
- a Dask DataFrame or Array (or a dict holding Dask arrays) is computed into
  one of those, partition by partition, by the caller's Dask client, while
  the daemon already serves the rest (tether.daemon.dask_objects).

The daemon is a subprocess that ends with the Python that started it: at
`stop()`, at the interpreter's exit, and when that process dies (a kernel
restart), which it watches (`--stop-with`).
"""

from __future__ import annotations

import atexit
import hashlib
import html
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from tether.wire.checksums import sha256_of

from . import posix
from .dask_objects import STOP_SECONDS, Materialization, checked, is_dask, target_of
from .private import private_dir
from .sources.snapshots import process_alive
from .spawn import DaemonProcess


class Server:
    """A running daemon: `url` is what `tether serve` prints (the password),
    `stop()` ends it, `with tether.serve(...) as server:` too."""

    def __init__(self, process: DaemonProcess, datasets: Sequence[str],
                 computing: Sequence[Materialization] = (), passfile: Path | None = None,
                 dask_client: Any = None) -> None:
        self._process = process
        self._passfile = passfile
        self._dask_client = dask_client  # one tether.serve made for an address
        self.datasets = list(datasets)  # the in-memory ones, by keyword
        self._computing = list(computing)  # Dask collections being written

    def ready(self, timeout: float | None = None) -> bool:
        """Wait until every Dask collection is computed and served (True), or
        `timeout` s (False); raises what failed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        return all(each.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
                   for each in self._computing)

    @property
    def url(self) -> str:
        return self._process.url

    @property
    def pid(self) -> int:
        return self._process.proc.pid

    def log(self) -> str:
        """What the daemon wrote to its log so far."""
        return self._process.stderr_text()

    def stop(self) -> None:
        """End the daemon (a clean stop: its streams end, its state is kept)."""
        if self in _LIVE:
            _LIVE.discard(self)
            _stop_computing(self._computing)
            self._process.close()
            if self._passfile:
                self._passfile.unlink(missing_ok=True)
            if self._dask_client is not None:
                self._dask_client.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._process.proc.poll() is None else "stopped"
        return f"<tether.Server {state} {self.url}>"

    def _repr_html_(self) -> str:
        """In Jupyter: the URL to copy (it is the password) and what is served."""
        url = html.escape(self.url)
        names = html.escape(", ".join(self.datasets) or "files")
        return (f"<div><b>tether serve</b> ({names})<br><code>{url}</code> "
                f"<button onclick=\"navigator.clipboard.writeText('{url}')\">copy</button>"
                "<br><small>The URL is the password: paste it into the notebook's secret "
                "TETHER_URL.</small></div>")


def serve(*paths: str | os.PathLike, host: str = "127.0.0.1", port: int = 0,
          tunnel: str | None = None, sql: Mapping[str, str] | None = None,
          transforms: Mapping[str, str] | None = None, allow_sql: bool = False,
          insecure: bool = False, state_dir: str | os.PathLike | None = None,
          results_dir: str | os.PathLike | None = None,
          share: Mapping[str, str | os.PathLike] | None = None,
          max_memory: str | None = None, max_image_pixels: int | None = None,
          dask: Any = None, **objects: Any) -> Server:
    """Start a daemon serving `paths` (files, folders, databases) and `objects`
    (tables, dicts of arrays, Dask collections, under their keyword names);
    return at once. `dask`: a `distributed.Client` (or its scheduler's
    address) that computes Dask collections and runs `transforms`; without
    it, Dask's default scheduler computes them and transforms run locally.

    Every option of `tether serve` is a keyword with its default: pinned TLS
    and a token unless `insecure`, `tunnel="ngrok"`, `sql={"cheap": "SELECT
    ..."}`, `transforms={"train": "prep:clean"}`, `allow_sql=True`.

    >>> server = tether.serve("./data", train=df, arrays={"x": x, "y": y})  # doctest: +SKIP
    >>> server.url                                                           # doctest: +SKIP
    """
    posix.require()
    state = _private_state(state_dir)
    lazy = {name: checked(name, obj) for name, obj in objects.items() if is_dask(obj)}
    if not paths and not objects:
        raise ValueError("tether.serve: give paths to serve, or objects as keywords "
                         "(tether.serve(train=df))")
    address = _scheduler_address(dask) if dask is not None and transforms else None
    args = [*_options(host, port, tunnel, sql, transforms, allow_sql, insecure, results_dir,
                      share, max_memory, max_image_pixels), "--stop-with", str(os.getpid())]
    targets = {name: target_of(name, obj, state / "objects") for name, obj in lazy.items()}
    args += [f"--awaiting={name}={target}" for name, target in targets.items()]
    if address is not None:
        args += ["--dask", address]
    served = [snapshot(name, obj, state / "objects")
              for name, obj in objects.items() if name not in lazy]
    client = _dask_client(dask, bool(lazy))
    own_client = client if client is not dask else None  # made here: closed at stop
    computing: list[Materialization] = []
    bare, passfile = _passwords_apart(paths, state)
    try:
        for name, obj in lazy.items():
            computing.append(Materialization(name, obj, targets[name], client))
        env = {"PGPASSFILE": str(passfile)} if passfile else None
        server = Server(DaemonProcess([*bare, *served], state, *args, env=env), list(objects),
                        computing, passfile, own_client)
    except BaseException:
        _stop_computing(computing)
        if own_client is not None:
            own_client.close()
        if passfile:
            passfile.unlink(missing_ok=True)
        raise
    _LIVE.add(server)
    return server


def _private_state(state_dir: str | os.PathLike | None) -> Path:
    """The state folder, made private (0700) as the daemon makes it when it is
    new: snapshots are written into it before the daemon starts."""
    from .serve.server import default_state_dir

    state = Path(state_dir) if state_dir is not None else default_state_dir()
    if not state.exists():
        state.mkdir(parents=True, mode=0o700)
        os.chmod(state, 0o700)
    return state


def _passwords_apart(paths: Sequence[Any], state: Path) -> tuple[list[Any], Path | None]:
    """Database URLs without their passwords, and a private passfile (libpq's
    .pgpass format, mode 0600) holding them, ahead of the user's own: the
    daemon's command line, which `ps` shows, never carries one."""
    from .prepare.preparation import is_database_url
    from .sources.postgres import has_password, redact, without_password

    lines, bare = [], []
    for path in paths:
        text = str(path)
        if is_database_url(text) and has_password(text):
            if redact(text) == text:  # spelled so that only libpq finds it
                raise ValueError(f"tether.serve: {text.split('?')[0]}: give the password as "
                                 "postgresql://USER:PASSWORD@HOST/DB, or in PGPASSWORD")
            lines.append(_passfile_line(text))
            text = without_password(text)
        bare.append(text if is_database_url(text) else Path(path))
    if not lines:
        return bare, None
    mine = Path(os.environ.get("PGPASSFILE", Path.home() / ".pgpass"))
    if mine.is_file():
        lines.append(mine.read_text(errors="replace"))
    private = private_dir(state / "private")
    _forget_dead_passfiles(private)
    fd, name = tempfile.mkstemp(dir=private, prefix=f"pgpass-{os.getpid()}-")  # 0600
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")
    return bare, Path(name)


def _forget_dead_passfiles(private: Path) -> None:
    """Passfiles whose process died without stopping its daemon (a kernel
    killed): the pid in the name is gone."""
    for path in private.glob("pgpass-*-*"):
        pid = path.name.split("-")[1]
        if pid.isdigit() and not process_alive(int(pid)):
            path.unlink(missing_ok=True)


def _passfile_line(url: str) -> str:
    """host:port:database:user:password for `url` ("*" where it names none)."""
    from psycopg.conninfo import conninfo_to_dict

    given = conninfo_to_dict(url)
    fields = [str(given.get(key) or "*") for key in ("host", "port", "dbname", "user")]
    fields = ["*" if "," in value else value for value in fields]  # several hosts
    return ":".join(f.replace("\\", "\\\\").replace(":", "\\:")
                    for f in [*fields, str(given["password"])])


def _stop_computing(computing: Sequence[Materialization]) -> None:
    """Every one told to stop first, then waited for together."""
    deadline = time.monotonic() + STOP_SECONDS
    for each in computing:
        each.stop(deadline=time.monotonic())  # (sets its flag, waits for nothing)
    for each in computing:
        each.stop(deadline)


def _dask_client(dask: Any, needed: bool) -> Any:
    """The client that computes Dask collections: the one given, one for the
    address given, or None (Dask's default scheduler, or its default client)."""
    if not needed or dask is None or not isinstance(dask, str):
        return dask
    from distributed import Client

    return Client(dask, set_as_default=False)


def _scheduler_address(dask: Any) -> str:
    """The address the daemon, another process, reaches the scheduler at."""
    address = dask if isinstance(dask, str) else dask.scheduler.address
    if address.startswith("inproc://"):
        raise ValueError("tether.serve(dask=client): this client's cluster runs inside this "
                         "process (LocalCluster(processes=False)), where the daemon cannot "
                         "reach it; use LocalCluster() or a scheduler's tcp:// address")
    return address


def _options(host: str, port: int, tunnel: str | None, sql: Mapping[str, str] | None,
             transforms: Mapping[str, str] | None, allow_sql: bool, insecure: bool,
             results_dir: Any, share: Mapping[str, Any] | None,
             max_memory: str | None, max_image_pixels: int | None) -> Iterator[str]:
    """`tether serve`'s flags for these keywords."""
    yield from ("--host", host, "--port", str(port))
    if tunnel:
        yield from ("--tunnel", tunnel)
    for name, query in (sql or {}).items():
        yield from ("--sql", f"{name}={query}")
    for name, function in (transforms or {}).items():
        yield from ("--transform", f"{name}={function}")
    if allow_sql:
        yield "--allow-sql"
    if insecure:
        yield "--insecure"
    if results_dir is not None:
        yield from ("--results-dir", str(results_dir))
    for name, folder in (share or {}).items():
        yield from ("--share", f"{name}={folder}")
    if max_memory is not None:
        yield from ("--max-memory", str(max_memory))
    if max_image_pixels is not None:
        yield from ("--max-image-pixels", str(max_image_pixels))


def snapshot(name: str, obj: Any, folder: Path) -> Path:
    """`obj` written under `folder` as what the daemon serves as `name`: the same
    path for the same content (kept), another for other content."""
    if not name.isidentifier():
        raise ValueError(f"tether.serve: {name!r} cannot name a dataset")
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(obj, Mapping):
        return _arrays(name, obj, folder)
    return _table(name, obj, folder)


def _arrays(name: str, columns: Mapping[str, Any], folder: Path) -> Path:
    import numpy as np

    arrays = {str(k): np.ascontiguousarray(v) for k, v in columns.items()}
    lengths = {k: len(v) for k, v in arrays.items() if v.ndim}
    if not arrays or len(set(lengths.values())) != 1 or len(lengths) != len(arrays):
        raise ValueError(f"tether.serve({name}=...): a dict of numpy arrays of one length "
                         f"(rows first); got lengths {lengths}")
    digest = hashlib.sha256(name.encode())
    for key in sorted(arrays):
        array = arrays[key]
        digest.update(f"{key}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(memoryview(array).cast("B"))
    target = folder / digest.hexdigest()[:32] / name
    if not target.is_dir():
        staging = Path(tempfile.mkdtemp(dir=folder))
        for key, array in arrays.items():
            np.save(staging / f"{key}.npy", array)
        target.parent.mkdir(exist_ok=True)
        os.replace(staging, target)  # whole or not at all
    return target


def _table(name: str, obj: Any, folder: Path) -> Path:
    import pyarrow as pa

    schema, batches = _record_batches(name, obj)
    fd, temporary = tempfile.mkstemp(dir=folder, suffix=".arrow")
    os.close(fd)
    try:
        with pa.OSFile(temporary, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            for batch in batches:  # a reader or a dataset streams: memory stays a batch
                writer.write_batch(batch)
        with open(temporary, "rb") as written:
            digest = sha256_of(written, hashlib.sha256(name.encode()))
        target = folder / digest[:32] / f"{name}.arrow"
        if not target.exists():
            target.parent.mkdir(exist_ok=True)
            os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return target


def _record_batches(name: str, obj: Any) -> tuple[Any, Iterator[Any]]:
    """The object's schema and record batches, whatever table it is."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    kind = type(obj).__module__.split(".")[0]
    if kind == "pandas":
        obj = pa.Table.from_pandas(obj)
    elif kind == "polars":
        obj = obj.to_arrow()
    if isinstance(obj, pa.Table):
        return obj.schema, iter(obj.to_batches())
    if isinstance(obj, pa.RecordBatch):
        return obj.schema, iter([obj])
    if isinstance(obj, pa.RecordBatchReader):
        return obj.schema, iter(obj)
    if isinstance(obj, ds.Dataset):
        return obj.schema, obj.to_batches()
    raise TypeError(f"tether.serve({name}=...): cannot serve a {type(obj).__name__}; give a "
                    "pandas or polars DataFrame, a pyarrow Table, RecordBatchReader or "
                    "Dataset, a dict of numpy arrays, or a Dask DataFrame or Array")


_LIVE: set[Server] = set()  # running: stopped at exit even when the caller kept no handle


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        server.stop()
