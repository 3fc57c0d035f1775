"""`vllm-videoanchor serve MODEL [--anchor-* flags] [any vLLM server flags]`
`vllm-videoanchor selftest [--arch ...] [--attention-backend NAME] [--chunked]`
`vllm-videoanchor router --encoder URL [URL ...] --decode URL [--port P]`
`vllm-videoanchor disagg MODEL [--port P] [any vLLM server flags]`  (encoder + decode + router)
`vllm-videoanchor explain MODEL VIDEO [--out DIR] [--anchor JSON]`  (heatmap of where the anchors fall)

Starts vLLM's OpenAI-compatible server (the module entry point: `vllm serve` does not start
under the CPU build) with the plugin, our middleware and `--trust-request-mm-kwargs` (the
middleware reduces client kwargs to an allowlist before vLLM sees them). Our settings
travel to every server process in the environment, as do PROMETHEUS_MULTIPROC_DIR (so
the engine processes' solver metrics appear on /metrics) and the solve log.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import pydantic

from vllm_videoanchor.settings import AnchorSettings

MIDDLEWARE = "vllm_videoanchor_server.middleware.AnchorMiddleware"
SERVER_MAX_VISUAL_TOKENS = 4096  # a served engine bounds anchored items by default (offline: no bound)
API_KEYS_ENV = "VIDEOANCHOR_API_KEYS"


def _defaults() -> AnchorSettings:
    """The flags' defaults: this environment's settings (VIDEOANCHOR_*, e.g. from a Helm
    chart), else the server's own (a bound on anchored items)."""
    from_env = AnchorSettings.from_env()
    server = {"max_visual_tokens": SERVER_MAX_VISUAL_TOKENS}
    return from_env.model_copy(update={k: v for k, v in server.items() if k not in from_env.model_fields_set})


def _parser(defaults: AnchorSettings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vllm-videoanchor", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("selftest", help="check anchoring on this vLLM install and device (tiny models)",
                        add_help=False)
    commands.add_parser("router", help="the front of the disaggregated mode (encoder first, then decode)",
                        add_help=False)
    commands.add_parser("disagg", help="start an encoder instance, a decode instance and the router",
                        add_help=False)
    commands.add_parser("explain", help="draw where the anchors fall on a video or images (no server)",
                        add_help=False)
    serve = commands.add_parser("serve", help="start the OpenAI-compatible server",
                                description="Any flag not listed here goes to vLLM's server unchanged.")
    serve.add_argument("model")
    serve.add_argument("--anchor-default", choices=("on", "off"), default="on" if defaults.anchor_default else "off",
                       help="anchor requests that carry no `anchor` option (default: off)")
    serve.add_argument("--anchor-max-visual-tokens", type=int, default=defaults.max_visual_tokens,
                       help="largest anchored item in visual tokens; larger ones get HTTP 400")
    serve.add_argument("--anchor-max-iter-limit", type=int, default=defaults.max_iter_limit,
                       help="largest `anchor.max_iter` a request may ask for")
    serve.add_argument("--anchor-max-frames", type=int, default=defaults.max_frames,
                       help="largest media_io_kwargs.video.num_frames a request may ask for")
    serve.add_argument("--anchor-solver-backend", choices=("torch", "cupy"), default=defaults.solver_backend,
                       help="array library of the SSC solve (cupy: GPU engines with CuPy installed)")
    serve.add_argument("--anchor-role", choices=ROLES, default="single",
                       help="single: one instance does everything; encoder / decode: the two sides of vLLM's "
                       "encoder disaggregation (the encoder instance runs the vision tower and the solve, the "
                       "decode instance prefill and decode; put `vllm-videoanchor router` in front)")
    serve.add_argument("--anchor-ec-path", help="directory the encoder and decode instances share, where vLLM's "
                       "EC connector leaves encoder outputs (with their gains); required with --anchor-role")
    serve.add_argument("--api-key", nargs="+", action="extend", help="passed to vLLM; also guards our layer")
    return parser


ROLES = ("single", "encoder", "decode")
EC_ROLES = {"encoder": "ec_producer", "decode": "ec_consumer"}


def ec_transfer_flags(role: str, ec_path: str | None) -> list[str]:
    """vLLM's --ec-transfer-config for a side of the disaggregated mode (its shared-storage
    EC connector, which keeps each encoder output under its multimodal hash: the anchor
    option is part of that hash, so anchored and plain outputs never mix)."""
    if role == "single":
        return []
    if not ec_path:
        raise ValueError(f"--anchor-role {role} needs --anchor-ec-path (a directory both instances share)")
    config = {"ec_connector": "ECExampleConnector", "ec_role": EC_ROLES[role],
              "ec_connector_extra_config": {"shared_storage_path": ec_path}}
    return ["--ec-transfer-config", json.dumps(config)]


# vLLM flags that set the compilation config (and so the cudagraph mode) themselves
# (also as -cc.cudagraph_mode=..., --compilation-config.key=..., -O3)
COMPILATION_FLAGS = ("--compilation-config", "-cc", "-O")
# FULL CUDA graphs replay attention without Python, where the anchored path runs
# (engine/availability.py, PIECEWISE_GRAPHS; a literal here so that the command line loads
# no engine code): on CUDA, anchoring servers capture PIECEWISE graphs only
PIECEWISE_GRAPHS = ["--compilation-config", '{"cudagraph_mode": "PIECEWISE"}']


def _on_cuda() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cuda()


def _flag(setting: str) -> str:
    """The command-line flag of an AnchorSettings field (anchor_default -> --anchor-default,
    max_frames -> --anchor-max-frames)."""
    return "--" + ("" if setting.startswith("anchor_") else "anchor-") + setting.replace("_", "-")


def server_command(argv: list[str], on_cuda: bool | None = None) -> tuple[list[str], dict[str, str]]:
    """(vLLM server argv, environment additions) for `vllm-videoanchor` arguments."""
    defaults = _defaults()
    args, rest = _parser(defaults).parse_known_args(argv)
    flags = dict(anchor_default=args.anchor_default == "on", max_visual_tokens=args.anchor_max_visual_tokens,
                 max_iter_limit=args.anchor_max_iter_limit, max_frames=args.anchor_max_frames,
                 solver_backend=args.anchor_solver_backend,
                 solve_log=defaults.solve_log or os.path.join(tempfile.mkdtemp(prefix="videoanchor-"),
                                                              "solves.sqlite"))
    try:
        settings = AnchorSettings(**{**defaults.model_dump(), **flags})
    except pydantic.ValidationError as exc:  # a flag out of range: say which, as argparse would
        problems = "; ".join(f"{_flag(error['loc'][0])}: {error['msg']} (got {error['input']!r})"
                             for error in exc.errors())
        raise ValueError(problems) from None
    env = settings.to_env()
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", args.model,
               "--middleware", MIDDLEWARE, "--trust-request-mm-kwargs", *rest,
               *ec_transfer_flags(args.anchor_role, args.anchor_ec_path)]
    user_compilation = any(arg.split("=", 1)[0].split(".", 1)[0] in COMPILATION_FLAGS or arg.startswith("-O")
                           for arg in rest)
    if not user_compilation and (_on_cuda() if on_cuda is None else on_cuda):
        command += PIECEWISE_GRAPHS
    if args.api_key:
        command += ["--api-key", *args.api_key]
        env[API_KEYS_ENV] = "\n".join(args.api_key)
    return command, env


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["selftest"]:
        from vllm_videoanchor.testing.selftest import main as selftest  # only this command loads it

        sys.exit(selftest(argv[1:]))
    if argv[:1] == ["router"]:
        from .router import main as router

        return router(argv[1:])
    if argv[:1] == ["explain"]:
        from vllm_videoanchor.explain import main as explain

        sys.exit(explain(argv[1:]))
    if argv[:1] == ["disagg"]:
        from .disagg import main as disagg

        sys.exit(disagg(argv[1:]))
    try:
        command, env = server_command(argv)
    except ValueError as exc:  # a flag out of range
        sys.exit(f"vllm-videoanchor serve: error: {exc}")
    environment = dict(os.environ, **env)
    if "PROMETHEUS_MULTIPROC_DIR" not in environment:
        environment["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="videoanchor-metrics-")
    os.execve(sys.executable, command, environment)  # the server takes this process (signals, PID 1)


if __name__ == "__main__":
    main()
