"""Arrow Flight: a DoGet of the same data, uncompressed or with IPC lz4/zstd,
over plain gRPC or (`tls=True`) TLS with a self-signed certificate like Tether's."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight

from .. import data
from .base import Address, Batch, System, rebatch

CHUNK_BYTES = 4 << 20  # record batches of about Tether's shard size
_CERT_VARIABLE = "TETHER_BENCH_FLIGHT_CERT"  # hands the client the certificate to trust


def to_table(columns: dict[str, np.ndarray]) -> pa.Table:
    """Rows as Arrow: N-D columns become fixed-size lists of their flattened rows."""
    arrays = {}
    for name, values in columns.items():
        flat = np.ascontiguousarray(values).reshape(len(values), -1)
        if flat.shape[1] == 1 and values.ndim == 1:
            arrays[name] = pa.array(flat[:, 0])
        else:
            arrays[name] = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)),
                                                             flat.shape[1])
    return pa.table(arrays)


def _options(compression: str) -> pa.ipc.IpcWriteOptions:
    codec = {"none": None, "lz4": "lz4", "zstd": "zstd"}[compression]
    return pa.ipc.IpcWriteOptions(compression=codec)


def _chunk_rows(table: pa.Table) -> int:
    return max(1, CHUNK_BYTES * table.num_rows // max(table.nbytes, 1))


def _tls_files(folder: Path) -> tuple[Path, Path]:
    """(key, certificate) PEM files in `folder`, made like the daemon's on first use."""
    from tether.daemon.serve.identity import Identity

    Identity(folder=folder).tls()
    return folder / "key.pem", folder / "cert.pem"


class FlightServer(flight.FlightServerBase):
    def __init__(self, table: pa.Table, compression: str, tls_dir: Path | None = None) -> None:
        if tls_dir is None:
            super().__init__("grpc://127.0.0.1:0")
        else:
            key, cert = _tls_files(tls_dir)
            super().__init__("grpc+tls://127.0.0.1:0", tls_certificates=[
                flight.CertKeyPair(cert.read_bytes(), key.read_bytes())])
        self.table = table
        self.options = _options(compression)

    def do_get(self, context, ticket):
        batches = self.table.to_batches(max_chunksize=_chunk_rows(self.table))
        return flight.RecordBatchStream(pa.Table.from_batches(batches), options=self.options)


class FlightSystem(System):
    def __init__(self, compression: str, tls: bool = False) -> None:
        self.compression = compression
        self.tls = tls
        self.name = f"flight {compression}" + (" +TLS" if tls else "")
        self._tls_dir: Path | None = None

    def start(self, dataset: Path, workdir: Path) -> Address:
        tls = ()
        if self.tls:
            self._tls_dir = workdir / "flight-tls"
            tls = (str(self._tls_dir),)
        port = self._spawn("tether.bench.servers", "flight", str(dataset), self.compression,
                           *tls)
        return ("127.0.0.1", int(port))

    def client_env(self) -> dict[str, str]:
        return {_CERT_VARIABLE: str(self._tls_dir / "cert.pem")} if self._tls_dir else {}

    def _connect(self, address: Address) -> flight.FlightClient:
        cert = os.environ.get(_CERT_VARIABLE)
        if not cert:
            return flight.connect(f"grpc://{address[0]}:{address[1]}")
        from tether.wire.tls import CERT_NAME

        return flight.connect(f"grpc+tls://{address[0]}:{address[1]}",
                              tls_root_certs=Path(cert).read_bytes(),
                              override_hostname=CERT_NAME)

    def batches(self, dataset: Path, address: Address | None,
                batch_size: int) -> Iterator[Batch]:
        shapes = {n: v.shape[1:] for n, v in data.load(dataset).items()}
        client = self._connect(address)
        reader = client.do_get(flight.Ticket(b"all"))

        def chunks() -> Iterator[Batch]:
            for chunk in reader:
                batch = chunk.data
                out = {}
                for name, shape in shapes.items():
                    column = batch.column(name)
                    if shape:
                        column = column.flatten()
                    values = column.to_numpy(zero_copy_only=False)
                    out[name] = values.reshape(batch.num_rows, *shape)
                yield out

        yield from rebatch(chunks(), batch_size)
        client.close()

    def wire_bytes(self, dataset: Path) -> int:
        """The IPC stream Flight sends: the same batches, options and compression."""
        table = to_table(data.load(dataset))
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema, options=_options(self.compression)) as w:
            for batch in table.to_batches(max_chunksize=_chunk_rows(table)):
                w.write_batch(batch)
        return sink.getvalue().size

