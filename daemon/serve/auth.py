"""Every call must carry `authorization: Bearer <token>`; others are refused.

The check runs before any servicer code (a gRPC server interceptor) and
compares in constant time. The token itself is never logged; refusals are
logged with the method clipped, at most a few times a minute (a caller with
long method paths once wrote 66 MB of log in 5 s).
"""

from __future__ import annotations

import hmac
import logging

import grpc

from ..logsafe import RateLimited, clip

log = logging.getLogger(__name__)
_refusals_log = RateLimited(log)

_REFUSAL = ("missing or wrong token: use the full URL `tether serve` printed "
            "(tether://HOST:PORT/?fp=...&token=...)")


class TokenAuth(grpc.ServerInterceptor):
    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

        def refuse(request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, _REFUSAL)

        self._refusals = {
            (False, False): grpc.unary_unary_rpc_method_handler(refuse),
            (True, False): grpc.stream_unary_rpc_method_handler(refuse),
            (True, True): grpc.stream_stream_rpc_method_handler(refuse),
            (False, True): grpc.unary_stream_rpc_method_handler(refuse),
        }

    def _allowed(self, metadata) -> bool:
        for key, value in metadata or ():
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else value
                return hmac.compare_digest(given, self._expected)
        return False

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if self._allowed(handler_call_details.invocation_metadata):
            return handler
        _refusals_log.warning("refused token", "refused %s: missing or wrong token",
                              clip(handler_call_details.method, 100))
        if handler is None:
            return None
        return self._refusals[(handler.request_streaming, handler.response_streaming)]


def came_over_tls(context: grpc.ServicerContext) -> bool:
    """Whether this call's connection is TLS, which checks every byte's integrity (a
    plain port, such as the ngrok HTTPS edge's local one, is not)."""
    level = context.auth_context().get("security_level") or [b""]
    return level[0] == b"TSI_PRIVACY_AND_INTEGRITY"
