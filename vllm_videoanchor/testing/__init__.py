"""Tiny random-weight vision-language models, built offline (no hub), for tests, benchmarks and the demo.

    python -m vllm_videoanchor.testing OUT_DIR
        [--arch qwen2_5_vl|qwen2_vl|qwen3_vl|llava_onevision|internvl|internvl_chat] [--seed 0] [--size tiny|small]

writes a standard Hugging Face model directory (config, safetensors weights, a byte-level
BPE tokenizer trained here, image and video processor configs) that both transformers and
vLLM load. A few MB; a few seconds. Text ("tiny", the tests' model): 2 layers, hidden 128,
4 heads of 32 (CPU attention's smallest head size), 2 KV heads. "small" (benchmarks):
8 layers, hidden 1024, 16 heads of 64, 4 KV heads, and 4x the pixels per frame.

- specs.py: per architecture, what callers need to know (ArchSpec: placeholders, visual-token
  counts of the tests' media, video metadata); SIZES.
- tokenizer.py: the tokenizer and chat template every builder shares.
- qwen_vl.py, llava_onevision.py, internvl.py: the builders, per family.
- engine_run.py, hf_reference.py, selftest.py: `vllm-videoanchor selftest`, its engine runs
  on the tiny models and the dense transformers reference it checks them against.
- ssc_data.py: seeded token sets (the families the solver modes are calibrated and tested on).

The plugin and the server never import this package (only `selftest` and `make demo` do).
The tests' own scaffolding lives in tests/ (tests/support/, tests/cpu_test_env/).

Importing this package imports no torch, transformers or vLLM.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from .specs import ARCHS, SIZES, SPECS, ArchSpec, model_spec, spec, video_metadata

__all__ = ["ARCHS", "SIZES", "SPECS", "ArchSpec", "build_tiny_model", "model_spec", "spec", "video_metadata"]

# arch -> its builder module (each has build(out, arch, seed, size))
_BUILDERS = {"qwen2_5_vl": "qwen_vl", "qwen2_vl": "qwen_vl", "qwen3_vl": "qwen_vl",
             "llava_onevision": "llava_onevision", "internvl": "internvl", "internvl_chat": "internvl"}


def build_tiny_model(out_dir: str | Path, arch: str = "qwen2_5_vl", seed: int = 0, size: str = "tiny") -> Path:
    """Write a tiny random-weight model of `arch` to `out_dir` and return the path."""
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {tuple(SIZES)}, got {size!r}")
    builder = importlib.import_module(f".{_BUILDERS[arch]}", __name__)
    return builder.build(Path(out_dir), arch, seed, SIZES[size])
