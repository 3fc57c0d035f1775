"""The Triton anchored prefill kernel against an independent dense float64 reference, run
on CPU tensors under the Triton interpreter.

TRITON_INTERPRET must be set before triton is first imported in the process (triton
decides interpreter-or-compiler per function when it is decorated, its own library
included). When an earlier test module already imported triton without it (anything
that imports vLLM does), these tests run in a fresh process instead
(`test_in_fresh_interpreter_process`). The environment variable is restored after the
imports, and set again only while these tests run.

The GPU versions (compiled kernels, realistic shapes) are in
test_kernel_anchored_prefill_cuda.py.
"""

import os

_PREVIOUS_INTERPRET = os.environ.get("TRITON_INTERPRET")
os.environ["TRITON_INTERPRET"] = "1"  # before triton or the kernel module is imported

import importlib.util  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from fresh_process import triton_mode  # noqa: E402

triton = pytest.importorskip("triton")

import kernel_cases  # noqa: E402
from kernel_cases import assert_matches, check_batch  # noqa: E402

KERNEL_FILE = Path(__file__).resolve().parents[2] / "vllm_videoanchor" / "kernels" / "anchored_prefill.py"
# whether triton (and so its own library) was first imported in interpreter mode here
IN_PROCESS = type(triton.language.standard.cdiv).__name__ == "InterpretedFunction"


def _load_interpreted_kernel_module():
    """A private copy of the kernel module, decorated in interpreter mode (the package
    module may already have been imported, compiled, by other code in this process)."""
    spec = importlib.util.spec_from_file_location("_anchored_prefill_interpreted", KERNEL_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.kernel_interpreted()
    return module


kp = _load_interpreted_kernel_module() if IN_PROCESS else None

if _PREVIOUS_INTERPRET is None:
    os.environ.pop("TRITON_INTERPRET", None)
else:
    os.environ["TRITON_INTERPRET"] = _PREVIOUS_INTERPRET

in_process, _interpret_env, test_in_fresh_interpreter_process = triton_mode(__file__, IN_PROCESS, interpret=True)


# ---------------------------------------------------------------------------- builders

class Batch(kernel_cases.Batch):
    """kernel_cases.Batch on CPU tensors, run through the interpreted kernel."""

    def __init__(self, specs, **kwargs):
        super().__init__(specs, kernel=kp.anchored_prefill_attention, **kwargs)


# A step mixing: a whole prompt, a chunk after 55 cached positions (earlier chunks /
# prefix-cache hit), a one-token extension, a request that is not anchored (its rows must
# stay untouched), a chunk ending exactly on a block boundary; selected out of order.
MIXED = [(37, 37), (100, 45), (58, 1), (20, 20), (64, 16)]
MIXED_REQUESTS = [4, 2, 0, 1]


# ------------------------------------------------------------------------------- tests

@in_process
@pytest.mark.parametrize("group,hkv", [(1, 2), (4, 2), (7, 1)])
@pytest.mark.parametrize("block_size", [16, 32])
@pytest.mark.parametrize("layout", ["NHD", "HND", "cpu"])
def test_layouts_block_sizes_gqa_fp32(layout, block_size, group, hkv):
    batch = Batch(MIXED, hq=group * hkv, hkv=hkv, d=32, block_size=block_size, layout=layout,
                  seed=block_size + group)
    check_batch(batch, MIXED_REQUESTS)


@in_process
@pytest.mark.parametrize("d", [32, 64, 80, 128, 256])
def test_head_sizes_fp32(d):
    specs = [(70, 30), (33, 33), (45, 1)]
    batch = Batch(specs, hq=4, hkv=2, d=d, block_size=16, layout="HND", seed=d)
    check_batch(batch, [0, 1, 2])


@in_process
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["NHD", "HND", "cpu"])
@pytest.mark.parametrize("group,hkv,d", [(1, 2, 64), (7, 1, 128), (4, 2, 32)])
def test_half_dtypes(dtype, layout, group, hkv, d):
    batch = Batch(MIXED, hq=group * hkv, hkv=hkv, d=d, block_size=16, dtype=dtype,
                  layout=layout, seed=d + group)
    check_batch(batch, MIXED_REQUESTS)


@in_process
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("layout", ["NHD", "cpu"])
def test_unit_gains_equal_causal_sdpa(layout, dtype):
    specs = [(90, 90), (77, 20), (40, 1)]
    batch = Batch(specs, hq=8, hkv=2, d=64, block_size=16, dtype=dtype, layout=layout,
                  seed=7, unit_gains=True)
    out = batch.run([0, 1, 2])
    for r, (ctx, q_len) in enumerate(specs):
        blk, off, _ = batch.context(r)
        # through the very views the kernel reads
        k = batch.key_cache[blk, off].double().transpose(0, 1)  # [hkv, ctx, d]
        v = batch.value_cache[blk, off].double().transpose(0, 1)
        q = batch.query[batch.rows(r)].double().transpose(0, 1)  # [hq, q_len, d]
        allowed = torch.arange(ctx)[None, :] <= torch.arange(ctx - q_len, ctx)[:, None]
        ref = F.scaled_dot_product_attention(
            q, k.repeat_interleave(4, 0), v.repeat_interleave(4, 0), attn_mask=allowed,
            scale=batch.scale).transpose(0, 1)
        assert_matches(out[batch.rows(r)], ref, dtype)


@in_process
def test_one_token_chunks_only():
    """Steps where every anchored row is a one-token extension over cached context
    (full prefix-cache hits, one-token last chunks), a one-token prompt included."""
    specs = [(100, 1), (33, 1), (1, 1), (17, 1)]
    for group, hkv in [(1, 2), (7, 1)]:
        batch = Batch(specs, hq=group * hkv, hkv=hkv, d=64, block_size=16, layout="cpu", seed=group)
        check_batch(batch, [3, 0, 2], max_query_len=1)


@in_process
def test_chunked_prefill_equals_whole_prompt():
    """A prompt prefilled in chunks (each seeing the earlier ones only through the paged
    cache) gives the rows of one whole-prompt call."""
    ctx = 93
    whole = Batch([(ctx, ctx)], hq=8, hkv=2, d=64, block_size=16, layout="HND", seed=3)
    expected = whole.run([0])
    at = 0
    for chunk in [40, 1, 31, 21]:
        at += chunk
        step = torch.zeros(chunk, 8, 64)
        kp.anchored_prefill_attention(
            whole.query[at - chunk: at], whole.key_cache, whole.value_cache, whole.block_table,
            torch.tensor([0, chunk], dtype=torch.int32), torch.tensor([at], dtype=torch.int32),
            whole.gain_k, whole.gain_v, whole.scale, step, torch.tensor([0], dtype=torch.int32),
            chunk)
        torch.testing.assert_close(step, expected[at - chunk: at], rtol=1e-5, atol=1e-5)
    assert at == ctx


@in_process
def test_strided_query_and_output_and_oversized_grid():
    """Query and output as strided views (a slice of a fused qkv buffer), and a
    max_query_len above the real one (surplus programs exit)."""
    specs = [(50, 50), (80, 30)]
    batch = Batch(specs, hq=8, hkv=2, d=32, block_size=16, layout="NHD", seed=11)
    T = batch.query.shape[0]
    qkv = torch.randn(T, 8 + 2 * 2, 32)
    qkv[:, :8] = batch.query
    query = qkv[:, :8]
    out_buf = torch.full((T, 8, 2 * 32), 123.0)
    output = out_buf[:, :, 32:]
    assert not query.is_contiguous() and not output.is_contiguous()
    batch.run([0, 1], query=query, output=output, max_query_len=200)
    assert (out_buf[:, :, :32] == 123.0).all()
    for r in range(2):
        assert_matches(output[batch.rows(r)], batch.reference(r), torch.float32)


@in_process
def test_no_selected_request_is_a_no_op():
    batch = Batch([(20, 20)], hq=2, hkv=1, d=32, block_size=16, seed=1)
    out = batch.run([])
    assert (out == 123.0).all()
    out = batch.run([0], max_query_len=0)
    assert (out == 123.0).all()


@in_process
def test_requests_disabled_on_the_device_are_left_untouched():
    """`enabled` (one flag per listed request, decided on the device) skips requests
    without a host sync: their rows keep what the stock kernel wrote."""
    batch = Batch([(40, 40), (70, 30), (33, 1)], hq=4, hkv=2, d=32, block_size=16, seed=5)
    out = batch.run([0, 1, 2], enabled=[1, 0, 1])
    assert_matches(out[batch.rows(0)], batch.reference(0), torch.float32)
    assert (out[batch.rows(1)] == 123.0).all()
    assert_matches(out[batch.rows(2)], batch.reference(2), torch.float32)
    with pytest.raises(ValueError, match="enabled"):
        batch.run([0, 1], enabled=[1])


@in_process
def test_bad_arguments_raise(monkeypatch):
    batch = Batch([(20, 20)], hq=4, hkv=2, d=32, block_size=16, seed=1)
    args = dict(query=batch.query, key_cache=batch.key_cache, value_cache=batch.value_cache,
                block_table=batch.block_table, query_start_loc=batch.query_start_loc,
                seq_lens=batch.seq_lens, slot_gain_k=batch.gain_k, slot_gain_v=batch.gain_v,
                scale=batch.scale, output=torch.empty_like(batch.query),
                requests=torch.tensor([0], dtype=torch.int32), max_query_len=20)
    with pytest.raises(ValueError, match="multiple"):
        kp.anchored_prefill_attention(**{**args, "query": torch.randn(20, 3, 32),
                                         "output": torch.empty(20, 3, 32)})
    with pytest.raises(ValueError, match="output"):
        kp.anchored_prefill_attention(**{**args, "output": torch.empty(20, 4, 16)})
    with pytest.raises(ValueError, match="dtype"):
        kp.anchored_prefill_attention(**{**args, "query": batch.query.half(),
                                         "output": torch.empty(20, 4, 32).half()})
    monkeypatch.setattr(kp, "triton", None)
    with pytest.raises(RuntimeError, match="Triton"):
        kp.anchored_prefill_attention(**args)
