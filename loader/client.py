"""`tether.connect(url)`: the unary calls (ls, describe, status) on one channel."""

from __future__ import annotations

import os

import grpc

from .colab import resolve_url
from .upload import chunks as upload_chunks
from .upload import open_source
from .wire import rpc
from .wire.errors import from_rpc_error
from .wire.url import Endpoint, parse_url
from .wire.v1 import tether_pb2 as pb

OVERWRITE_METADATA = "tether-overwrite"  # the daemon's results.OVERWRITE_METADATA


class Client:
    """A connection to one daemon. Use as a context manager, or call close().

    >>> with tether.connect("tether://127.0.0.1:7000/") as daemon:  # doctest: +SKIP
    ...     print([d.name for d in daemon.datasets()])
    """

    def __init__(self, url: str | Endpoint | None = None, timeout: float = 30.0,
                 proxy: str | None = None, channel: grpc.Channel | None = None) -> None:
        url = resolve_url(url)  # None: $TETHER_URL, or Colab's secret TETHER_URL
        self.endpoint = url if isinstance(url, Endpoint) else parse_url(url)
        self.timeout = timeout
        # A loader lends its own channel (already connected): close() leaves it open.
        self._owns_channel = channel is None
        self.channel = rpc.open_channel(self.endpoint, proxy) if channel is None else channel
        self._metadata = rpc.call_metadata(self.endpoint)
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
        """Send bytes, or the file at a path, to the daemon's results folder as `name`.

        `name` may have subfolders ("run-3/metrics.json"); it may not leave the
        folder. A `str` is a path (FileNotFoundError if there is no file):
        send text as bytes. The file appears whole or not at all. An existing
        file of that name is refused unless `overwrite`. A progress bar shows
        on a terminal for uploads of 16 MB or more (or with progress=True).

        >>> tether.connect(url).upload("run-3/ckpt.msgpack", "/tmp/ckpt.msgpack")  # doctest: +SKIP
        """
        source = open_source(data)  # a missing file is said here, before the call
        method = self.channel.stream_unary(
            rpc.method_path(rpc.UPLOAD),
            request_serializer=pb.UploadChunk.SerializeToString,
            response_deserializer=pb.UploadResult.FromString,
        )
        metadata = (*self._metadata, (OVERWRITE_METADATA, "1")) if overwrite else self._metadata
        try:
            return method(upload_chunks(name, source, progress), metadata=metadata)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
        finally:
            source[0].close()  # when the call failed before reading it all

    def close(self) -> None:
        if self._owns_channel:
            self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def connect(url: str | Endpoint | None = None, timeout: float = 30.0,
            proxy: str | None = None) -> Client:
    """Open a client to the daemon at `url` (what `tether serve` printed).

    `proxy="http://HOST:PORT"` tunnels through an HTTP CONNECT proxy (Tailscale's
    userspace networking on Colab); TLS stays pinned end to end. Without it,
    `grpc_proxy`/`https_proxy`/`http_proxy` from the environment apply.
    """
    return Client(url, timeout=timeout, proxy=proxy)
