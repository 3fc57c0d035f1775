"""Which implementation runs the anchored prefill: torch (CPU default) or the Triton kernel.

The Triton kernel is what GPUs run; on CPU it runs under the Triton interpreter
(TRITON_INTERPRET=1 in the engine's environment, set before anything imports triton), so
that the CPU engine tests can exercise that exact kernel. Chosen once per process from the
settings (VIDEOANCHOR_ATTENTION_KERNEL), checked at model start-up, never per step.
"""

from __future__ import annotations

from ..settings import process_settings
from . import compat


def attention_kernel() -> str:
    """This process's anchored prefill implementation: "torch" or "triton"."""
    return process_settings().attention_kernel


def check_attention_kernel() -> None:
    """Start-up check: the chosen kernel can run here (a clear error instead of a failed step)."""
    if attention_kernel() != "triton":
        return
    from ..kernels import anchored_prefill

    if not anchored_prefill.triton_available():
        raise RuntimeError("VIDEOANCHOR_ATTENTION_KERNEL=triton, but Triton is not installed")
    if compat.is_cpu_platform() and not anchored_prefill.kernel_interpreted():
        raise RuntimeError("VIDEOANCHOR_ATTENTION_KERNEL=triton on CPU needs TRITON_INTERPRET=1 in the engine's "
                           "environment (Triton has no CPU backend)")
