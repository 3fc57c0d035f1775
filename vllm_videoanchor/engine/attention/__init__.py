"""Anchored attention: vLLM's attention backends with the anchored prefill path.

    forward.py        the forward every backend shares, and what it supports (declared)
    gains.py          the step's gains and the per-slot gain cache that outlives them
    cpu.py            CPU_ATTN (torch recompute, or the Triton kernel in its interpreter)
    cpu_kv_layout.py  CPU_ATTN's KV layouts read back, per ISA
    cuda.py           FLASH_ATTN and TRITON_ATTN (the Triton kernel)
    flashinfer.py     FLASHINFER (its module needs the flashinfer package)

The ops themselves sit side by side in `vllm_videoanchor/kernels/` (torch and Triton).
Backends keep vLLM's names and are registered by `vllm_videoanchor.register()`; vLLM imports
a module only when it picks that backend.
"""
