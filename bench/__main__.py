"""``python -m bench ARGS`` is ``bench ARGS``."""

import sys

from bench.cli import main

sys.exit(main())
