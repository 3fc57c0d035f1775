"""Spatial video QA evaluation against any OpenAI-compatible endpoint, anchor off vs on and
any ablation variants: `python -m benchmarks.eval --help`, and README.md beside this file."""
