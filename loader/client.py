"""`tether.connect(url)`: what is not a Loader's stream, on one channel: the unary
calls (ls, describe, status), uploads, and reads of whole tables (tether.tables)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from .colab import resolve_url
from .retry import RetryPolicy
from .transfers import RemoteFile, Transfers
from .wire import rpc
from .wire.errors import from_rpc_error
from .wire.url import Endpoint, parse_url
from .wire.v1 import tether_pb2 as pb

if TYPE_CHECKING:
    import pyarrow as pa

    from .tables import TableStream



class Client:
    """A connection to one daemon. Use as a context manager, or call close().

    >>> with tether.connect("tether://127.0.0.1:7000/") as daemon:  # doctest: +SKIP
    ...     print([d.name for d in daemon.datasets()])
    """

    def __init__(self, url: str | Endpoint | None = None, timeout: float = 30.0,
                 proxy: str | None = None, channel: grpc.Channel | None = None,
                 retry: RetryPolicy | None = None) -> None:
        url = resolve_url(url)  # None: $TETHER_URL, or Colab's secret TETHER_URL
        self.endpoint = url if isinstance(url, Endpoint) else parse_url(url)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()  # for reads: a broken one resumes
        # A loader lends its own channel (already connected): close() leaves it open.
        self._owns_channel = channel is None
        self.channel = rpc.open_channel(self.endpoint, proxy) if channel is None else channel
        self._metadata = rpc.call_metadata(self.endpoint)
        self.transfers = Transfers(self.channel, self._metadata, self.retry, self._call)
        self._calls = {
            name: self.channel.unary_unary(
                rpc.method_path(name),
                request_serializer=request.SerializeToString,
                response_deserializer=response.FromString,
            )
            for name, (request, response) in rpc.unary_methods().items()
        }

    def _call(self, name: str, request):
        try:
            return self._calls[name](request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None

    def datasets(self) -> list[pb.DatasetInfo]:
        return list(self.listing().datasets)

    def listing(self) -> pb.ListDatasetsResponse:
        """What the daemon serves, and the files under its paths it does not (`left_out`)."""
        return self._call("ListDatasets", pb.ListDatasetsRequest())

    def describe(self, dataset: str, shuffle_window_bytes: int = 0,
                 filter: str = "") -> pb.DatasetInfo:
        """One dataset, with its layout for a shuffle window of that many bytes;
        with `filter`, the rows it selects (`matching_rows`) and their layout."""
        return self._call("Describe", pb.DescribeRequest(
            dataset=dataset, shuffle_window_bytes=shuffle_window_bytes, filter=filter))

    def status(self) -> pb.StatusResponse:
        return self._call("Status", pb.StatusRequest())

    def upload(self, name: str, data: bytes | str | os.PathLike,
               progress: bool | None = None, overwrite: bool = False) -> pb.UploadResult:
        """Send bytes, a file, or a folder to the daemon's results folder as `name`.

        `name` may have subfolders ("run-3/metrics.json"); it may not leave the
        folder. A `str` is a path (FileNotFoundError if there is nothing
        there): send text as bytes. A file appears whole or not at all; a
        folder appears with all its files at once (one rename at home), so a
        checkpoint restorer never sees half of one. An existing name is
        refused unless `overwrite`. A broken connection is retried under the
        client's RetryPolicy and the upload resumes where it stopped. A
        progress bar shows on a terminal from 16 MB (or with progress=True).

        >>> tether.connect(url).upload("run-3/ckpt", "/content/ckpt")  # doctest: +SKIP
        """
        return self.transfers.upload(name, data, progress, overwrite)

    def download(self, name: str, dest: str | os.PathLike) -> Path:
        """Bring the file or folder `name` (of the results, or of a folder the
        owner shares: `tether serve --share models=./pretrained` makes
        "models/..." names) to `dest` on this machine. Each file is checked by
        SHA-256 and renamed into place once whole; a broken connection resumes.

        >>> tether.connect(url).download("models/bert-base", "/content/bert")  # doctest: +SKIP
        """
        return self.transfers.download(name, dest)

    def list(self, prefix: str = "") -> list[RemoteFile]:
        """Names (shares' under their share's name), sizes and modification
        times of the files a download can bring, those starting with `prefix`."""
        return self.transfers.list(prefix)

    # Tables (tether.tables): pyarrow, with the source's types and nulls.

    def read(self, dataset: str, columns: Sequence[str] | None = None,
             filter: str | None = None, limit: int | None = None,
             codec: str = "auto") -> pa.Table:
        """The dataset as a `pyarrow.Table`, as stored: timestamps, categories
        (dictionaries), text, nulls and pandas' index and dtypes intact, so
        `.to_pandas()` gives the owner's DataFrame. `columns` (default: all),
        `filter` (the Loader's language, evaluated on the daemon) and `limit`
        (rows, in file order) are applied at home: only those rows travel.
        Tables only: Parquet, Arrow/Feather, CSV, JSON Lines, databases.

        >>> df = tether.connect(url).read("train", filter="age > 30").to_pandas()  # doctest: +SKIP
        """
        return self.read_batches(dataset, columns, filter, limit, codec).table()

    def read_batches(self, dataset: str, columns: Sequence[str] | None = None,
                     filter: str | None = None, limit: int | None = None,
                     codec: str = "auto") -> TableStream:
        """`read` as an iterator of `pyarrow.RecordBatch`, a chunk (about 4 MB) in
        memory at a time: for tables larger than this machine's memory."""
        from .tables import read_request

        return self._table_stream(read_request(dataset, columns, filter, limit, codec=codec))

    def query(self, sql: str, codec: str = "auto") -> pa.Table:
        """A read-only SQL query over the served datasets, run at home, its
        result a `pyarrow.Table` (the daemon must run with --allow-sql; tables
        are named by their datasets: `SELECT * FROM "shop.items" WHERE ...`)."""
        return self.query_batches(sql, codec).table()

    def query_batches(self, sql: str, codec: str = "auto") -> TableStream:
        """`query` as an iterator of `pyarrow.RecordBatch`, in bounded memory."""
        from .tables import read_request

        return self._table_stream(read_request(sql=sql, codec=codec))

    def _table_stream(self, request: pb.ReadRequest) -> TableStream:
        from .tables import TableStream

        return TableStream(self.channel, self._metadata, request, self.retry)

    def close(self) -> None:
        if self._owns_channel:
            self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def connect(url: str | Endpoint | None = None, timeout: float = 30.0,
            proxy: str | None = None, retry: RetryPolicy | None = None) -> Client:
    """Open a client to the daemon at `url` (what `tether serve` printed).

    `proxy="http://HOST:PORT"` tunnels through an HTTP CONNECT proxy (Tailscale's
    userspace networking on Colab); TLS stays pinned end to end. Without it,
    `grpc_proxy`/`https_proxy`/`http_proxy` from the environment apply.
    `retry`: how reads reconnect when the connection breaks (they resume).
    """
    return Client(url, timeout=timeout, proxy=proxy, retry=retry)
