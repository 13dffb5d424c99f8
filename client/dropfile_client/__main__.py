"""`python -m dropfile_client ...` runs the `dropfile` command line."""

import sys

from .cli import main

sys.exit(main())
