"""``python -m kdpipe``: the same command line as ``kdpipe`` (torchrun starts each rank this way)."""

import sys

from kdpipe.cli import main

sys.exit(main())
