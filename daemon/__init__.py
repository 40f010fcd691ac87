"""Tether's local side: serves datasets from this machine (`tether serve`)."""

from .server import Daemon, DaemonConfig

__all__ = ["Daemon", "DaemonConfig"]
