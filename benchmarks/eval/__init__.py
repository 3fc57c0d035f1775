"""Spatial video QA evaluation against any OpenAI-compatible endpoint, anchor off vs on and
any ablation variants: `python -m benchmarks.eval --help`, and README.md beside this file.

What it is for: several anchor settings in one run, per request (`--variant NAME=JSON`: the
paper's ablations), which lmms-eval cannot send. For benchmark numbers (VSI-Bench and the
rest of lmms-eval's tasks, anchor off vs on through the server's --anchor-default) use
lmms-eval in its own environment (`make lmms-eval`; docs/evaluation.md);
`benchmarks.eval.lmms_vsibench` writes a local VSI-Bench-format set for it."""
