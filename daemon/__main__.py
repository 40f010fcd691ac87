"""`python -m tether.daemon PATH...` is `tether serve PATH...`."""

import sys

from .cli import serve_main

sys.exit(serve_main(sys.argv[1:]))
