"""The compiled Triton anchored prefill kernel on a CUDA device, at realistic shapes
(28 query / 4 KV heads of 128, bf16, contexts of 2k-8k), against a dense float64
reference computed on the device; plus CUDA-graph capture. Skipped cleanly without CUDA.

This file never sets TRITON_INTERPRET: it needs compiled kernels. Triton fixes
interpreter-or-compiler per function when it is decorated, its own library included, so
when the interpreter tests (test_kernel_anchored_prefill.py) imported triton first in
this process, these tests run in a fresh process (`test_in_fresh_compiled_process`).
"""

import importlib.util
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from fresh_process import triton_mode
from markers import requires_cuda

pytestmark = [pytest.mark.cuda, requires_cuda]

_PREVIOUS_INTERPRET = os.environ.pop("TRITON_INTERPRET", None)  # compiled kernels here
try:
    triton = pytest.importorskip("triton")
finally:
    if _PREVIOUS_INTERPRET is not None:
        os.environ["TRITON_INTERPRET"] = _PREVIOUS_INTERPRET

import kernel_cases  # noqa: E402
from kernel_cases import assert_matches, check_batch  # noqa: E402

KERNEL_FILE = Path(__file__).resolve().parents[2] / "vllm_videoanchor" / "kernels" / "anchored_prefill.py"
# whether triton (and so its own library) was imported in compiler mode in this process
IN_PROCESS = type(triton.language.standard.cdiv).__name__ != "InterpretedFunction"


def _compiled_kernel_module():
    from vllm_videoanchor.kernels import anchored_prefill as module

    if module.kernel_interpreted():  # imported under TRITON_INTERPRET: a private copy
        saved = os.environ.pop("TRITON_INTERPRET", None)
        try:
            spec = importlib.util.spec_from_file_location("_anchored_prefill_compiled", KERNEL_FILE)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        finally:
            if saved is not None:
                os.environ["TRITON_INTERPRET"] = saved
    assert not module.kernel_interpreted()
    return module


kp = _compiled_kernel_module() if IN_PROCESS else None

in_process, _compiled_env, test_in_fresh_compiled_process = triton_mode(
    __file__, IN_PROCESS, interpret=False, timeout=1800)


# ---------------------------------------------------------------------------- builders

DEVICE = "cuda"


class Batch(kernel_cases.Batch):
    """kernel_cases.Batch on the CUDA device (bf16 unless told), run through the compiled
    kernel."""

    def __init__(self, specs, *, dtype=torch.bfloat16, **kwargs):
        super().__init__(specs, kernel=kp.anchored_prefill_attention, dtype=dtype, device=DEVICE, **kwargs)


# whole prompts, chunks after 5k / 1k cached positions, a one-token extension, a request
# that is not anchored (rows untouched), a chunk ending mid-block; selected out of order
REALISTIC = [(2048, 2048), (8192, 3000), (4096, 1), (3000, 3000), (6000, 512), (5003, 777)]
REALISTIC_REQUESTS = [5, 0, 2, 1, 4]


# ------------------------------------------------------------------------------- tests

@in_process
@pytest.mark.parametrize("layout,dtype,block_size", [
    ("NHD", torch.bfloat16, 16), ("HND", torch.bfloat16, 16), ("NHD", torch.float16, 16),
    ("NHD", torch.bfloat16, 32), ("HND", torch.float16, 32),
])
def test_qwen_shapes_match_dense_reference(layout, dtype, block_size):
    batch = Batch(REALISTIC, hq=28, hkv=4, d=128, block_size=block_size, dtype=dtype,
                  layout=layout, seed=block_size)
    check_batch(batch, REALISTIC_REQUESTS)


@in_process
@pytest.mark.parametrize("hq,hkv,d", [(32, 8, 64), (16, 2, 80), (28, 4, 96), (8, 1, 256),
                                      (12, 12, 128), (14, 2, 128), (32, 32, 32)])
def test_head_sizes_and_gqa_ratios(hq, hkv, d):
    specs = [(2500, 2500), (4000, 1200), (3000, 1), (1000, 1000)]
    batch = Batch(specs, hq=hq, hkv=hkv, d=d, layout="NHD", seed=d)
    check_batch(batch, [0, 1, 2])


@in_process
def test_fp32_uses_ieee_dots():
    specs = [(2048, 2048), (3000, 700), (1500, 1)]
    batch = Batch(specs, hq=28, hkv=4, d=128, dtype=torch.float32, layout="HND", seed=5)
    check_batch(batch, [0, 1, 2])


@in_process
def test_cpu_attn_layout_on_device():
    """Any strides work: the CPU_ATTN page layout (dim-major K) on the device."""
    specs = [(3000, 3000), (4000, 900), (2000, 1)]
    batch = Batch(specs, hq=28, hkv=4, d=128, layout="cpu", seed=9)
    assert batch.key_cache.stride(1) == 1
    check_batch(batch, [0, 1, 2])


@in_process
def test_requests_disabled_on_the_device_keep_their_rows():
    """The backends list every prefilling request and let a device flag skip the plain ones."""
    batch = Batch(REALISTIC, hq=28, hkv=4, d=128, seed=11)
    out = batch.run([0, 1, 2, 3], enabled=[1, 0, 1, 0])
    for r in (0, 2):
        assert_matches(out[batch.rows(r)], batch.reference(r), batch.dtype)
    for r in (1, 3):
        assert (out[batch.rows(r)] == 123.0).all()


@in_process
def test_one_token_extensions_only():
    specs = [(8192, 1), (2048, 1), (1, 1), (5000, 1)]
    batch = Batch(specs, hq=28, hkv=4, d=128, seed=2)
    check_batch(batch, [3, 0, 2], max_query_len=1)


@in_process
def test_unit_gains_equal_causal_sdpa():
    specs = [(4096, 4096), (6000, 1500)]
    batch = Batch(specs, hq=28, hkv=4, d=128, seed=4, unit_gains=True)
    out = batch.run([0, 1])
    for r, (ctx, q_len) in enumerate(specs):
        blk, off, _ = batch.context(r)
        k = batch.key_cache[blk, off].float().transpose(0, 1).repeat_interleave(7, 0)
        v = batch.value_cache[blk, off].float().transpose(0, 1).repeat_interleave(7, 0)
        q = batch.query[batch.rows(r)].float().transpose(0, 1)
        allowed = (torch.arange(ctx, device=DEVICE)[None, :]
                   <= torch.arange(ctx - q_len, ctx, device=DEVICE)[:, None])
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=batch.scale)
        assert_matches(out[batch.rows(r)], ref.transpose(0, 1).double(), torch.bfloat16)


@in_process
def test_chunked_prefill_equals_whole_prompt():
    ctx = 8192
    whole = Batch([(ctx, ctx)], hq=28, hkv=4, d=128, seed=6)
    expected = whole.run([0]).float()
    at = 0
    for chunk in [3000, 1, 2500, 2691]:
        at += chunk
        step = torch.zeros(chunk, 28, 128, dtype=torch.bfloat16, device=DEVICE)
        kp.anchored_prefill_attention(
            whole.query[at - chunk: at], whole.key_cache, whole.value_cache, whole.block_table,
            torch.tensor([0, chunk], dtype=torch.int32, device=DEVICE),
            torch.tensor([at], dtype=torch.int32, device=DEVICE),
            whole.gain_k, whole.gain_v, whole.scale, step,
            torch.tensor([0], dtype=torch.int32, device=DEVICE), chunk)
        scale = expected[at - chunk: at].abs().max()
        assert (step.float() - expected[at - chunk: at]).abs().max() <= 1e-2 * scale
    assert at == ctx


@in_process
def test_cuda_graph_capture_and_replay():
    """No device-to-host sync: the launch captures into a CUDA graph, and replays read
    the current contents of the (in-place updated) inputs."""
    batch = Batch(REALISTIC, hq=28, hkv=4, d=128, seed=8)
    requests = torch.tensor(REALISTIC_REQUESTS, dtype=torch.int32, device=DEVICE)
    output = torch.full_like(batch.query, 123.0)

    def launch():
        kp.anchored_prefill_attention(
            batch.query, batch.key_cache, batch.value_cache, batch.block_table,
            batch.query_start_loc, batch.seq_lens, batch.gain_k, batch.gain_v, batch.scale,
            output, requests, 3000)

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        launch()  # compile outside the capture
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        launch()
    batch.gain_k.mul_(1.5)
    batch.gain_v.add_(0.25)
    output.fill_(123.0)
    graph.replay()
    torch.cuda.synchronize()
    for r in range(len(REALISTIC)):
        if r in REALISTIC_REQUESTS:
            assert_matches(output[batch.rows(r)], batch.reference(r), torch.bfloat16)
        else:
            assert (output[batch.rows(r)] == 123.0).all()
