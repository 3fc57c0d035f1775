"""`python -m vllm_videoanchor.explain MODEL MEDIA...`: the same as `vllm-videoanchor explain`."""

import sys

from .cli import main

sys.exit(main())
