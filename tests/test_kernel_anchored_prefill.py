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
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

triton = pytest.importorskip("triton")

from vllm_videoanchor.engine.cpu_kv_layout import kv_views  # noqa: E402

KERNEL_FILE = Path(__file__).resolve().parents[1] / "vllm_videoanchor" / "kernels" / "anchored_prefill.py"
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

in_process = pytest.mark.skipif(
    not IN_PROCESS,
    reason="triton was imported without TRITON_INTERPRET in this process: "
           "test_in_fresh_interpreter_process runs these",
)


@pytest.fixture(autouse=True)
def _interpret_env(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")


def test_in_fresh_interpreter_process():
    if IN_PROCESS:
        pytest.skip("the tests of this file run in this process")
    env = dict(os.environ, TRITON_INTERPRET="1")
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(Path(__file__).resolve()), "-q", "-p", "no:cacheprovider"],
        cwd=root, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout


# ---------------------------------------------------------------------------- builders

def cdiv(a, b):
    return -(-a // b)


def build_caches(K, V, layout):
    """[num_blocks, block_size, Hkv, D] K and V views of a paged cache in `layout`:
    "NHD" / "HND": vLLM CUDA's logical [blocks, Hkv, block_size, 2D] cache whose physical
    order is LBNHC resp. LBHNC, viewed as vLLM does (`transpose(1, 2).split(D, -1)`);
    "cpu": CPU_ATTN's pages (K dim-major per page), read through kv_views(..., "vec")."""
    nb, bs, hkv, d = K.shape
    if layout == "NHD":
        phys = torch.cat([K, V], dim=-1).contiguous()  # [nb, bs, hkv, 2d]
        logical = phys.permute(0, 2, 1, 3)  # [nb, hkv, bs, 2d]
    elif layout == "HND":
        logical = torch.cat([K, V], dim=-1).permute(0, 2, 1, 3).contiguous()
    elif layout == "cpu":
        page = torch.empty(nb, hkv, 2 * bs * d, dtype=K.dtype)
        page[..., : bs * d] = K.permute(0, 2, 3, 1).reshape(nb, hkv, d * bs)  # K[t, d] at d*bs + t
        page[..., bs * d:] = V.permute(0, 2, 1, 3).reshape(nb, hkv, bs * d)  # V[t, d] at P + t*d + d
        k_view, v_view = kv_views(page.view(nb, hkv, bs, 2 * d), "vec")
        assert k_view.stride(1) == 1 and k_view.stride(3) == bs  # token stride 1, dim-major
        return k_view, v_view
    else:
        raise ValueError(layout)
    assert logical.shape == (nb, hkv, bs, 2 * d)
    k_view, v_view = logical.transpose(1, 2).split(d, dim=-1)
    return k_view, v_view


class Batch:
    """A step: requests given as (context_len, query_len) (the chunk is the last query_len
    positions of the context), a shuffled paged cache, per-slot gains, poisoned (NaN)
    cache rows and gains wherever the kernel must not read."""

    def __init__(self, specs, *, hq, hkv, d, block_size, dtype=torch.float32, layout="NHD",
                 seed=0, unit_gains=False):
        g = torch.Generator().manual_seed(seed)
        self.specs, self.hq, self.hkv, self.d, self.bs = specs, hq, hkv, d, block_size
        self.dtype = dtype
        n_blocks = [cdiv(ctx, block_size) for ctx, _ in specs]
        num_blocks = sum(n_blocks) + 3
        perm = torch.randperm(num_blocks, generator=g)
        poison_block = int(perm[-1])
        self.block_table = torch.full((len(specs), max(n_blocks) + 2), poison_block, dtype=torch.int32)
        used = torch.zeros(num_blocks, block_size, dtype=torch.bool)
        at = 0
        for r, (ctx, _) in enumerate(specs):
            blocks = perm[at: at + n_blocks[r]]
            at += n_blocks[r]
            self.block_table[r, : n_blocks[r]] = blocks.int()
            pos = torch.arange(ctx)
            used[blocks[pos // block_size], pos % block_size] = True

        K = torch.randn(num_blocks, block_size, hkv, d, generator=g, dtype=torch.float64)
        V = torch.randn(num_blocks, block_size, hkv, d, generator=g, dtype=torch.float64)
        K[~used] = float("nan")
        V[~used] = float("nan")
        self.K, self.V = K.to(dtype), V.to(dtype)  # what the cache holds
        self.key_cache, self.value_cache = build_caches(self.K, self.V, layout)
        torch.testing.assert_close(self.key_cache, self.K, rtol=0, atol=0, equal_nan=True)
        torch.testing.assert_close(self.value_cache, self.V, rtol=0, atol=0, equal_nan=True)

        n_slots = num_blocks * block_size
        if unit_gains:
            self.gain_k = torch.ones(n_slots)
            self.gain_v = torch.ones(n_slots)
        else:  # text slots at 1, visual slots at 1 + alpha * s, a few below 1
            u = torch.rand(n_slots, generator=g)
            kind = torch.rand(n_slots, generator=g)
            self.gain_k = torch.where(kind < 0.4, 1.0, 1.0 + 9.5 * u)
            self.gain_v = torch.where(kind < 0.4, 1.0, 1.0 + 2.5 * u)
            self.gain_k[kind > 0.95] = 0.05
            self.gain_v[kind > 0.95] = 0.3
            self.gain_k[~used.flatten()] = float("nan")
            self.gain_v[~used.flatten()] = float("nan")

        q_lens = [q for _, q in specs]
        self.query_start_loc = torch.tensor([0] + q_lens, dtype=torch.int32).cumsum(0).int()
        self.seq_lens = torch.tensor([ctx for ctx, _ in specs], dtype=torch.int32)
        T = sum(q_lens)
        self.query = (2 * torch.randn(T, hq, d, generator=g, dtype=torch.float64)).to(dtype)
        self.scale = d ** -0.5

    def rows(self, r):
        return slice(int(self.query_start_loc[r]), int(self.query_start_loc[r + 1]))

    def run(self, requests, *, max_query_len=None, sentinel=123.0, query=None, output=None):
        requests = torch.tensor(requests, dtype=torch.int32)
        if max_query_len is None:
            max_query_len = max([self.specs[int(r)][1] for r in requests] + [0])
        if output is None:
            output = torch.full((self.query.shape[0], self.hq, self.d), sentinel, dtype=self.dtype)
        return kp.anchored_prefill_attention(
            self.query if query is None else query, self.key_cache, self.value_cache,
            self.block_table, self.query_start_loc, self.seq_lens, self.gain_k, self.gain_v,
            self.scale, output, requests, max_query_len)

    def context(self, r):
        """Block ids, offsets and slots of request r's context positions."""
        ctx = self.specs[r][0]
        pos = torch.arange(ctx)
        blk = self.block_table[r, pos // self.bs].long()
        off = pos % self.bs
        return blk, off, blk * self.bs + off

    def reference(self, r):
        """Dense float64 anchored attention for request r's chunk: [q_len, Hq, D]."""
        ctx, q_len = self.specs[r]
        blk, off, slots = self.context(r)
        group = self.hq // self.hkv
        k = self.K[blk, off].double().repeat_interleave(group, dim=1)  # [ctx, hq, d]
        v = self.V[blk, off].double().repeat_interleave(group, dim=1)
        q = self.query[self.rows(r)].double()
        scores = torch.einsum("qhd,khd->hqk", q, k) * self.scale
        scores = scores + self.gain_k[slots].double().log()
        q_pos = torch.arange(ctx - q_len, ctx)
        causal = torch.arange(ctx)[None, :] > q_pos[:, None]
        scores = scores.masked_fill(causal, float("-inf"))
        probs = torch.softmax(scores, dim=-1) * self.gain_v[slots].double()
        return torch.einsum("hqk,khd->qhd", probs, v)


TOL = {  # (rtol, atol relative to the largest |reference| entry)
    torch.float32: (1e-5, 1e-5),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (1.6e-2, 1.6e-2),
}


def assert_matches(out, ref, dtype):
    rtol, atol = TOL[dtype]
    out = out.double()
    assert torch.isfinite(out).all()
    err = (out - ref).abs()
    bound = rtol * ref.abs() + atol * ref.abs().max()
    assert (err <= bound).all(), f"max err {err.max().item():.3g} (ref max {ref.abs().max().item():.3g})"
    return (err.max() / ref.abs().max()).item()


def check_batch(batch, requests, **run_kwargs):
    out = batch.run(requests, **run_kwargs)
    for r in range(len(batch.specs)):
        if r in requests:
            assert_matches(out[batch.rows(r)], batch.reference(r), batch.dtype)
        else:  # rows of requests not selected stay untouched
            assert (out[batch.rows(r)] == 123.0).all()
    return out


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
