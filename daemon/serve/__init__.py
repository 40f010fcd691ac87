"""Serving: the gRPC server and its servicer, authentication, the TLS
identity, the tunnel, and the results folder that uploads land in."""
