"""`python -m benchmarks.eval`: the runner (runner.py)."""

import sys

from .runner import main

sys.exit(main())
