"""The errors a Tether user can meet. Each message says what to do about it.

The daemon raises these; the servicer sends them as gRPC status codes; the
loader turns the codes back into the same classes, so a caller on the remote
side catches `tether.DatasetNotFound`, not a bare `grpc.RpcError`.
"""

from __future__ import annotations

import grpc


class TetherError(Exception):
    """Base class of every error Tether raises on purpose."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class RequestError(TetherError):
    """The request itself is wrong: an unknown codec, a bad batch size, ..."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class DatasetNotFound(TetherError):
    """The daemon serves no dataset by that name."""

    code = grpc.StatusCode.NOT_FOUND


class ColumnError(TetherError):
    """A column is unknown, or cannot become a tensor."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class DatasetError(TetherError):
    """The dataset exists but cannot be read: a corrupt or changed file."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class DataCorrupted(TetherError):
    """Bytes arrived damaged (checksum or size mismatch) or a file broke mid-read."""

    code = grpc.StatusCode.DATA_LOSS


class ProtocolError(TetherError):
    """The peer broke the wire contract (docs/protocol.md)."""

    code = grpc.StatusCode.INTERNAL


class AuthError(TetherError):
    """The daemon refused the token: missing, wrong, or another daemon's."""

    code = grpc.StatusCode.UNAUTHENTICATED


class SecurityError(TetherError):
    """The daemon's certificate does not match the fingerprint in the URL."""

    code = grpc.StatusCode.UNAUTHENTICATED


class ConnectionFailed(TetherError):
    """The daemon could not be reached, or the connection broke."""

    code = grpc.StatusCode.UNAVAILABLE


class Busy(TetherError):
    """The daemon is at a limit (streams from this address); try again later."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


_BY_CODE = {
    grpc.StatusCode.RESOURCE_EXHAUSTED: Busy,
    grpc.StatusCode.INVALID_ARGUMENT: RequestError,
    grpc.StatusCode.NOT_FOUND: DatasetNotFound,
    grpc.StatusCode.FAILED_PRECONDITION: DatasetError,
    grpc.StatusCode.DATA_LOSS: DataCorrupted,
    grpc.StatusCode.UNAVAILABLE: ConnectionFailed,
    grpc.StatusCode.UNAUTHENTICATED: AuthError,
    grpc.StatusCode.DEADLINE_EXCEEDED: ConnectionFailed,
}

# How a broken connection can read when grpc reports it as UNKNOWN or INTERNAL.
_TRANSPORT_SIGNS = ("Stream removed", "RST_STREAM", "Socket closed", "Connection reset",
                    "Broken pipe", "GOAWAY", "failed to connect", "Connection refused",
                    "keepalive")

# Subclasses that share a status code travel with a tag in the details.
_TAGGED = {cls.__name__: cls for cls in (ColumnError,)}


def require(ok: bool, message: str) -> None:
    """A RequestError with `message` unless `ok`: the one way a request's rules are checked."""
    if not ok:
        raise RequestError(message)


def to_status(error: TetherError) -> tuple[grpc.StatusCode, str]:
    """The (code, details) pair the daemon aborts an RPC with."""
    tag = type(error).__name__
    details = f"[{tag}] {error}" if tag in _TAGGED else str(error)
    return error.code, details


def from_rpc_error(error: grpc.RpcError) -> TetherError:
    """The Tether error a failed RPC stands for."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = (error.details() if hasattr(error, "details") else None) or str(error)
    for tag, cls in _TAGGED.items():
        prefix = f"[{tag}] "
        if details.startswith(prefix):
            return cls(details[len(prefix):])
    cls = _BY_CODE.get(code, TetherError)
    transport = code in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)
    if transport and any(sign.lower() in details.lower() for sign in _TRANSPORT_SIGNS):
        cls = ConnectionFailed
    if cls is ConnectionFailed:
        return ConnectionFailed(f"{details} (is `tether serve` running and the URL right?)")
    return cls(details)
