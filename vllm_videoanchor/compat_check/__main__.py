"""`python -m vllm_videoanchor.compat_check VERSION | --wheel WHEEL | --source DIR`."""

import sys

from . import main

sys.exit(main())
