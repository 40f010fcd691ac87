"""`python -m tether.daemon PATH...` is `tether serve PATH...`."""

import sys

from tether.cli import main

sys.exit(main(["serve", *sys.argv[1:]]))
