"""Tether's local side: serves datasets from this machine (`tether serve`)."""

from .serve.server import Daemon, DaemonConfig

__all__ = ["Daemon", "DaemonConfig"]
