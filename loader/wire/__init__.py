"""The code both sides share: the wire contract (`v1`), framing, tensor
encoding, codecs, checksums, errors, URLs, the stream request and the plan.

The daemon imports from here and never from the loader's modules; nothing
here imports the loader.
"""

# The release, declared once: pyproject.toml reads it, `tether.__version__`
# and the daemon's status report it.
VERSION = "0.1.0"
