"""The anchored prefill attention, two implementations of one op side by side:

    anchored_prefill_torch.py  `anchored_paged_attention`: pure torch, one request at a
                               time (the CPU engine's default)
    anchored_prefill.py        `anchored_prefill_attention`: the Triton kernel (paged,
                               varlen, causal, GQA; all the step's requests in one launch),
                               what GPUs run
    anchored_prefill_launch.py the Triton launcher's host side: argument checks, tile sizes

Both compute softmax(q k^T / sqrt(d) + log g_K) (g_V v) over a paged KV cache, with the
gains read per slot. Importing this package never requires Triton; the Triton launcher
raises a RuntimeError where Triton is absent.
"""
