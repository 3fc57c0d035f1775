"""`vllm-videoanchor explain MODEL MEDIA... [--out DIR] [--anchor JSON]`: where the anchors
fall on one video, or on a group of images anchored jointly.

The command line of explain (the package's docstring says what it draws, and how).
"""

from __future__ import annotations

import argparse
import json
import sys

from .anchor_map import read_anchor_map
from .explanation import DTYPES, explain


def _json_arg(name: str):
    def parse(text: str):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"{name} is not valid JSON: {exc}") from exc
    return parse


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vllm-videoanchor explain", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="local checkpoint directory (no downloads)")
    parser.add_argument("media", nargs="+", help="one video file, or image files anchored jointly")
    parser.add_argument("--out", default="videoanchor-explain", help="output directory (default: %(default)s)")
    parser.add_argument("--anchor", type=_json_arg("--anchor"), default=None,
                        help='anchor fields as in a request, e.g. \'{"n_clusters": 8}\' (default: the model\'s)')
    parser.add_argument("--media-io-kwargs", type=_json_arg("--media-io-kwargs"), default=None,
                        help="the server's --media-io-kwargs, e.g. '{\"video\": {\"num_frames\": 16}}', so that "
                        "frames are sampled as the server samples them")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--dtype", choices=("auto", *DTYPES), default="auto",
                        help="vision tower dtype: the server's --dtype (auto: the checkpoint's, as vLLM). In "
                        "bfloat16 transformers' and vLLM's vision towers round differently, so scores can "
                        "differ slightly from the server's: --anchor-map draws the server's own")
    parser.add_argument("--anchor-map", help="draw a server's anchor map instead of solving: the URL in an anchored "
                        "response's x-videoanchor-explain header (or its saved JSON)")
    parser.add_argument("--api-key", help="the server's API key, for --anchor-map URLs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.anchor is not None and not isinstance(args.anchor, (dict, bool)):
        parser().error("--anchor must be a JSON object of anchor fields (or true)")
    try:
        anchor_map = read_anchor_map(args.anchor_map, args.api_key) if args.anchor_map else None
        explanation = explain(args.model, args.media, args.anchor, args.media_io_kwargs, args.device, args.dtype,
                              anchor_map)
        paths = explanation.write(args.out)
    except (ValueError, FileNotFoundError) as exc:  # pydantic's ValidationError is a ValueError
        print(f"vllm-videoanchor explain: error: {exc}", file=sys.stderr)
        return 2
    stats = explanation.gains
    solved = f"{stats.n_iter} ADMM iterations, {stats.seconds:.3f} s" if not args.anchor_map else "the server's map"
    print(f"{len(explanation.tokens)} visual tokens in {len(explanation.panels)} panels; {solved}")
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0
