"""The committed protobuf code matches protos/ and imports on any supported protobuf."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from tether.wire.v1 import tether_pb2

ROOT = Path(__file__).resolve().parents[2]


def _drop_json_names(messages) -> None:
    for message in messages:
        for field in message.field:
            field.ClearField("json_name")
        _drop_json_names(message.nested_type)


def test_generated_code_is_not_stale(tmp_path: Path) -> None:
    """Compile protos/ with this machine's protoc and compare the descriptors.

    The comparison is of the FileDescriptorProto, not of the generated text, so
    it holds whichever grpcio-tools version is installed. On a mismatch run
    `python protos/generate.py` and commit the result.
    """
    pytest.importorskip("grpc_tools")  # grpcio-tools: absent on Colab's stack (.ci/run)
    out = tmp_path / "tether.desc"
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'protos'}",
         f"--descriptor_set_out={out}", "tether/v1/tether.proto"],
        check=True, cwd=ROOT,
    )
    compiled = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    _drop_json_names(compiled.message_type)  # protoc fills them in; gencode leaves them out
    committed = descriptor_pb2.FileDescriptorProto.FromString(tether_pb2.DESCRIPTOR.serialized_pb)
    assert compiled == committed, "loader/wire/v1 is stale: run `python protos/generate.py`"


def test_generated_code_has_no_runtime_version_pin() -> None:
    """Gencode from protoc >= 5.27 refuses protobuf 5.26, which Colab may have."""
    text = (ROOT / "loader" / "wire" / "v1" / "tether_pb2.py").read_text()
    assert "ValidateProtobufRuntimeVersion" not in text
    assert "Protobuf Python Version: 5.26" in text
