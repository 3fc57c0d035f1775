"""VideoAnchor for vLLM: subspace-anchored attention for video and multi-view VLMs.

`register()` is the `vllm.general_plugins` entry point. vLLM calls it in the API server,
the engine core and every worker, possibly more than once per process, so it must be
idempotent and cheap; it imports nothing heavy until there is something to register.
"""

__version__ = "0.1.0"

_registered = False


def register() -> None:
    """vLLM plugin entry point (idempotent). Model registration lands with the engine glue."""
    global _registered
    if _registered:
        return
    _registered = True
