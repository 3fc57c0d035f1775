"""GPU kernels (Triton) for the anchored prefill attention of DESIGN.md section 1.

`anchored_prefill.anchored_prefill_attention` is the paged, varlen, causal, GQA kernel
that computes what `engine.anchored_attention.anchored_paged_attention` computes in
pure torch. Importing this package never requires Triton; the launcher raises a
RuntimeError where Triton is absent.
"""
