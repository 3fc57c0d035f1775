"""Cases for the anchored prefill kernel tests, shared by test_kernel_anchored_prefill.py
(the kernel under the Triton interpreter, CPU tensors) and
test_kernel_anchored_prefill_cuda.py (the compiled kernel on a CUDA device): paged caches
in vLLM's layouts, a step's requests with an independent float64 dense reference, and the
comparison with it.

No triton here: each test file imports triton in its own mode (interpreter or compiler)
and passes its kernel function and its device to `Batch`.
"""

import torch

from vllm_videoanchor.engine.attention.cpu_kv_layout import kv_views


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
        page = torch.empty(nb, hkv, 2 * bs * d, dtype=K.dtype, device=K.device)
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
    cache rows and gains wherever the kernel must not read.

    The data is drawn on the CPU (in float64, then cast to `dtype`) and placed on `device`;
    `run` calls `kernel` (an anchored_prefill_attention) on it."""

    def __init__(self, specs, *, kernel, hq, hkv, d, block_size=16, dtype=torch.float32, layout="NHD",
                 seed=0, unit_gains=False, device="cpu"):
        g = torch.Generator().manual_seed(seed)
        self.specs, self.hq, self.hkv, self.d, self.bs = specs, hq, hkv, d, block_size
        self.dtype, self.device, self.kernel = dtype, device, kernel
        n_blocks = [cdiv(ctx, block_size) for ctx, _ in specs]
        num_blocks = sum(n_blocks) + 3
        perm = torch.randperm(num_blocks, generator=g)
        poison_block = int(perm[-1])
        block_table = torch.full((len(specs), max(n_blocks) + 2), poison_block, dtype=torch.int32)
        used = torch.zeros(num_blocks, block_size, dtype=torch.bool)
        at = 0
        for r, (ctx, _) in enumerate(specs):
            blocks = perm[at: at + n_blocks[r]]
            at += n_blocks[r]
            block_table[r, : n_blocks[r]] = blocks.int()
            pos = torch.arange(ctx)
            used[blocks[pos // block_size], pos % block_size] = True
        self.block_table = block_table.to(device)

        K = torch.randn(num_blocks, block_size, hkv, d, generator=g, dtype=torch.float64)
        V = torch.randn(num_blocks, block_size, hkv, d, generator=g, dtype=torch.float64)
        K[~used] = float("nan")
        V[~used] = float("nan")
        self.K, self.V = K.to(dtype).to(device), V.to(dtype).to(device)  # what the cache holds
        self.key_cache, self.value_cache = build_caches(self.K, self.V, layout)
        torch.testing.assert_close(self.key_cache, self.K, rtol=0, atol=0, equal_nan=True)
        torch.testing.assert_close(self.value_cache, self.V, rtol=0, atol=0, equal_nan=True)

        n_slots = num_blocks * block_size
        if unit_gains:
            gain_k = torch.ones(n_slots)
            gain_v = torch.ones(n_slots)
        else:  # text slots at 1, visual slots at 1 + alpha * s, a few below 1
            u = torch.rand(n_slots, generator=g)
            kind = torch.rand(n_slots, generator=g)
            gain_k = torch.where(kind < 0.4, 1.0, 1.0 + 9.5 * u)
            gain_v = torch.where(kind < 0.4, 1.0, 1.0 + 2.5 * u)
            gain_k[kind > 0.95] = 0.05
            gain_v[kind > 0.95] = 0.3
            gain_k[~used.flatten()] = float("nan")
            gain_v[~used.flatten()] = float("nan")
        self.gain_k, self.gain_v = gain_k.to(device), gain_v.to(device)

        q_lens = [q for _, q in specs]
        self.query_start_loc = torch.tensor([0] + q_lens, dtype=torch.int32).cumsum(0).int().to(device)
        self.seq_lens = torch.tensor([ctx for ctx, _ in specs], dtype=torch.int32, device=device)
        self.starts = [0]  # query_start_loc on the host
        for q in q_lens:
            self.starts.append(self.starts[-1] + q)
        T = sum(q_lens)
        self.query = (2 * torch.randn(T, hq, d, generator=g, dtype=torch.float64)).to(dtype).to(device)
        self.scale = d ** -0.5

    def rows(self, r):
        return slice(self.starts[r], self.starts[r + 1])

    def run(self, requests, *, max_query_len=None, sentinel=123.0, query=None, output=None, enabled=None):
        if max_query_len is None:
            max_query_len = max([self.specs[int(r)][1] for r in requests] + [0])
        requests = torch.tensor(requests, dtype=torch.int32, device=self.device)
        if output is None:
            output = torch.full((self.query.shape[0], self.hq, self.d), sentinel, dtype=self.dtype,
                                device=self.device)
        return self.kernel(
            self.query if query is None else query, self.key_cache, self.value_cache,
            self.block_table, self.query_start_loc, self.seq_lens, self.gain_k, self.gain_v,
            self.scale, output, requests, max_query_len,
            None if enabled is None else torch.tensor(enabled, dtype=torch.int32, device=self.device))

    def context(self, r):
        """Block ids, offsets and slots of request r's context positions."""
        ctx = self.specs[r][0]
        pos = torch.arange(ctx, device=self.device)
        blk = self.block_table[r, pos // self.bs].long()
        off = pos % self.bs
        return blk, off, blk * self.bs + off

    def reference(self, r, rows_per_pass=1024):
        """Dense float64 anchored attention for request r's chunk: [q_len, Hq, D] (in passes
        of rows_per_pass query rows, bounding the [Hq, rows, ctx] scores)."""
        ctx, q_len = self.specs[r]
        blk, off, slots = self.context(r)
        group = self.hq // self.hkv
        k = self.K[blk, off].double().repeat_interleave(group, dim=1)  # [ctx, hq, d]
        v = self.V[blk, off].double().repeat_interleave(group, dim=1)
        log_gk = self.gain_k[slots].double().log()
        gv = self.gain_v[slots].double()
        q_all = self.query[self.rows(r)].double()
        out = torch.empty(q_len, self.hq, self.d, dtype=torch.float64, device=self.device)
        for a in range(0, q_len, rows_per_pass):
            b = min(q_len, a + rows_per_pass)
            scores = torch.einsum("qhd,khd->hqk", q_all[a:b], k) * self.scale + log_gk
            q_pos = torch.arange(ctx - q_len + a, ctx - q_len + b, device=self.device)
            causal = torch.arange(ctx, device=self.device)[None, :] > q_pos[:, None]
            probs = torch.softmax(scores.masked_fill(causal, float("-inf")), dim=-1) * gv
            out[a:b] = torch.einsum("hqk,khd->qhd", probs, v)
        return out


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
    worst = 0.0
    for r in range(len(batch.specs)):
        if r in requests:
            worst = max(worst, assert_matches(out[batch.rows(r)], batch.reference(r), batch.dtype))
        else:  # rows of requests not selected stay untouched
            assert (out[batch.rows(r)] == 123.0).all()
    print(f"max error / max |ref| = {worst:.3g}")
    return out
