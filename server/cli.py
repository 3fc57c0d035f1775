"""`vllm-videoanchor COMMAND ...`: one entry point for every command.

`vllm-videoanchor serve MODEL [--anchor-* flags] [any vLLM server flags]`
`vllm-videoanchor selftest [--arch ...] [--attention-backend NAME] [--chunked]`
`vllm-videoanchor router --encoder URL [URL ...] --decode URL [--port P]`
`vllm-videoanchor disagg MODEL [--port P] [any vLLM server flags]`  (encoder + decode + router)
`vllm-videoanchor explain MODEL VIDEO [--out DIR] [--anchor JSON]`  (heatmap of where the anchors fall)

Only dispatch lives here: each command's module parses its own arguments (so its --help is
its own) and is imported only when that command runs (selftest and explain load torch and
transformers, serve loads vLLM).
"""

from __future__ import annotations

import argparse
import sys


def _serve(argv: list[str]) -> None:
    from .launch import main

    return main(argv)


def _selftest(argv: list[str]) -> int:
    from vllm_videoanchor.testing.selftest import main

    return main(argv)


def _router(argv: list[str]) -> None:
    from .router import main

    return main(argv)


def _disagg(argv: list[str]) -> int:
    from .disagg import main

    return main(argv)


def _explain(argv: list[str]) -> int:
    from vllm_videoanchor.explain import main

    return main(argv)


COMMANDS = (
    ("serve", _serve, "start the OpenAI-compatible server (vLLM's, with the plugin)"),
    ("selftest", _selftest, "check anchoring on this vLLM install and device (tiny models)"),
    ("router", _router, "the front of the disaggregated mode (encoder first, then decode)"),
    ("disagg", _disagg, "start an encoder instance, a decode instance and the router"),
    ("explain", _explain, "draw where the anchors fall on a video or images (no server)"),
)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vllm-videoanchor", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, run, summary in COMMANDS:  # no arguments of their own here: all go to `run`
        commands.add_parser(name, help=summary, add_help=False).set_defaults(func=run)
    return parser


def main(argv: list[str] | None = None) -> None:
    args, rest = parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    sys.exit(args.func(rest))


if __name__ == "__main__":
    main()
