"""Every call must carry `authorization: Bearer <token>`; others are refused.

The check runs before any servicer code (a gRPC server interceptor) and
compares in constant time. The token itself is never logged.
"""

from __future__ import annotations

import hmac
import logging

import grpc

log = logging.getLogger(__name__)

_REFUSAL = ("missing or wrong token: use the full URL `tether serve` printed "
            "(tether://HOST:PORT/?token=...)")


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
        log.warning("refused %s: missing or wrong token", handler_call_details.method)
        if handler is None:
            return None
        return self._refusals[(handler.request_streaming, handler.response_streaming)]
