"""`python -m vllm_videoanchor.testing OUT_DIR --arch ARCH [--seed N] [--size tiny|small]`."""

from __future__ import annotations

import argparse

from . import ARCHS, SIZES, build_tiny_model
from . import __doc__ as package_doc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m vllm_videoanchor.testing", description=package_doc.split("\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--arch", choices=ARCHS, default="qwen2_5_vl")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", choices=tuple(SIZES), default="tiny")
    args = parser.parse_args(argv)
    print(build_tiny_model(args.out_dir, args.arch, args.seed, args.size))


if __name__ == "__main__":
    main()
