"""Anchored prefill attention kernel vs torch's flash SDPA on the same shapes (a GPU benchmark).

    python benchmarks/attention_kernel.py [--contexts 2048 8192 16384 32768] [--chunk 2048]
                                          [--json OUT.json] [--smoke]

Qwen2.5-VL-7B's attention heads: 28 query / 4 KV heads of 128, bfloat16, one request.
Two rows per context L: the whole prompt as one prefill (L queries), and the last chunk
of a chunked prefill (`--chunk` queries at the end of L, the anchored chunk reading every
earlier key from the paged cache). The kernel reads K/V from a paged cache (block size 16,
shuffled block table, per-slot gains != 1); the baseline is torch's flash SDPA on
contiguous K/V with the same causal alignment (lower right) and no gains, i.e. the best
plain attention on the same shapes. Ratio = kernel / SDPA (lower is better); both timed in
the same run with CUDA events, median of `--repeats` after warm-up.
`--smoke` runs tiny shapes on the CPU under the Triton interpreter (checks the script).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def _make_case(context: int, queries: int, device, dtype, heads=28, kv_heads=4, head_dim=128, block_size=16,
               seed=0):
    import torch

    gen = torch.Generator(device="cpu").manual_seed(seed)
    n_blocks = (context + block_size - 1) // block_size
    k = torch.randn(context, kv_heads, head_dim, generator=gen).to(device, dtype)
    v = torch.randn(context, kv_heads, head_dim, generator=gen).to(device, dtype)
    q = torch.randn(queries, heads, head_dim, generator=gen).to(device, dtype)
    table = torch.randperm(n_blocks + 4, generator=gen)[:n_blocks].to(device, torch.int32)
    key_cache = torch.zeros(n_blocks + 4, block_size, kv_heads, head_dim, device=device, dtype=dtype)
    value_cache = torch.zeros_like(key_cache)
    positions = torch.arange(context, device=device)
    slots = table[positions // block_size].long() * block_size + positions % block_size
    key_cache.view(-1, kv_heads, head_dim)[slots] = k
    value_cache.view(-1, kv_heads, head_dim)[slots] = v
    gains_k = torch.ones(key_cache.shape[0] * block_size, device=device)
    gains_v = torch.ones_like(gains_k)
    gains_k[slots] = 1 + 9.5 * torch.rand(context, generator=gen).to(device)
    gains_v[slots] = 1 + 2.5 * torch.rand(context, generator=gen).to(device)
    return dict(q=q, k=k, v=v, key_cache=key_cache, value_cache=value_cache, table=table[None],
                gains_k=gains_k, gains_v=gains_v, context=context)


def _time(fn, repeats: int, device) -> float:
    """Median milliseconds of fn() (CUDA events on a GPU, wall clock elsewhere)."""
    import torch

    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2]


def run(contexts, chunk: int, repeats: int, device, dtype) -> list[dict]:
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.attention.bias import causal_lower_right

    from vllm_videoanchor.kernels.anchored_prefill import anchored_prefill_attention

    rows = []
    for context in contexts:
        for kind, queries in (("whole prompt", context), ("last chunk", min(chunk, context))):
            case = _make_case(context, queries, device, dtype)
            q, scale = case["q"], case["q"].shape[-1] ** -0.5
            out = torch.empty_like(q)
            starts = torch.tensor([0, queries], device=device, dtype=torch.int32)
            seq_lens = torch.tensor([context], device=device, dtype=torch.int32)
            requests = torch.zeros(1, device=device, dtype=torch.int32)

            def kernel():
                anchored_prefill_attention(q, case["key_cache"], case["value_cache"], case["table"], starts,
                                           seq_lens, case["gains_k"], case["gains_v"], scale, out, requests,
                                           queries)

            group = q.shape[1] // case["k"].shape[1]
            qs = q.transpose(0, 1)[None]  # [1, Hq, Lq, D]
            ks = case["k"].repeat_interleave(group, dim=1).transpose(0, 1)[None]  # GQA expanded outside the timing
            vs = case["v"].repeat_interleave(group, dim=1).transpose(0, 1)[None]
            bias = causal_lower_right(queries, context)
            backend = SDPBackend.FLASH_ATTENTION if device.type == "cuda" else SDPBackend.MATH

            def sdpa():
                with sdpa_kernel(backend):
                    torch.nn.functional.scaled_dot_product_attention(qs, ks, vs, attn_mask=bias, scale=scale)

            ms_kernel, ms_sdpa = _time(kernel, repeats, device), _time(sdpa, repeats, device)
            flops = 4 * q.shape[1] * q.shape[2] * (queries * context - queries * (queries - 1) / 2)
            rows.append(dict(context=context, queries=queries, kind=kind, kernel_ms=ms_kernel, sdpa_ms=ms_sdpa,
                             ratio=ms_kernel / ms_sdpa, kernel_tflops=flops / ms_kernel / 1e9))
    return rows


def print_table(rows, device_name: str) -> None:
    print(f"\nAnchored prefill kernel vs flash SDPA ({device_name}; 28 q / 4 kv heads of 128, bf16)\n")
    print("| context | queries | kernel ms | flash SDPA ms | ratio | kernel TFLOP/s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['context']} | {r['queries']} ({r['kind']}) | {r['kernel_ms']:.3f} | {r['sdpa_ms']:.3f} | "
              f"{r['ratio']:.2f} | {r['kernel_tflops']:.0f} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contexts", type=int, nargs="+", default=[2048, 8192, 16384, 32768])
    parser.add_argument("--chunk", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU under the Triton interpreter")
    args = parser.parse_args(argv)
    if args.smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported
    import torch

    if args.smoke:
        device, dtype, contexts, chunk, repeats = torch.device("cpu"), torch.float32, [64], 16, 1
    elif not torch.cuda.is_available():
        print("attention_kernel.py: no CUDA device (use --smoke to check the script on CPU)", file=sys.stderr)
        return 2
    else:
        device, dtype, contexts, chunk, repeats = torch.device("cuda"), torch.bfloat16, args.contexts, args.chunk, \
            args.repeats
    rows = run(contexts, chunk, repeats, device, dtype)
    print_table(rows, torch.cuda.get_device_name() if device.type == "cuda" else "CPU, Triton interpreter (smoke)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
