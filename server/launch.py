"""`vllm-videoanchor serve MODEL [--anchor-* flags] [any vLLM server flags]`: vLLM's
OpenAI-compatible server with the plugin.

Starts vLLM's server as its module (`vllm serve` does not start under the CPU build) with our
middleware and `--trust-request-mm-kwargs` (the middleware reduces client kwargs to an
allowlist before vLLM sees them). The settings travel to every server process in the
environment, the one channel that reaches API servers, engine core and workers, as do
PROMETHEUS_MULTIPROC_DIR (so the engine processes' solver metrics appear on /metrics) and
the solve log. `disagg` starts its two instances with `server_command` too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

from vllm_videoanchor.settings import AnchorSettings

from .media import POLICIES, POLICY_ENV, policy_from_env
from .settings_flags import add_settings_flags, served_defaults, settings_from_flags

MIDDLEWARE = "vllm_videoanchor_server.middleware.AnchorMiddleware"
# --anchor-role -> the EC connector's role in vLLM's encoder disaggregation
EC_ROLES = {"single": None, "encoder": "ec_producer", "decode": "ec_consumer"}
# vLLM flags that set the compilation config (and so the cudagraph mode) themselves
# (also as -cc.cudagraph_mode=..., --compilation-config.key=..., -O3)
COMPILATION_FLAGS = ("--compilation-config", "-cc", "-O")


def serve_parser(defaults: AnchorSettings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vllm-videoanchor serve", description="start vLLM's OpenAI-compatible "
                                     "server with the plugin and its request layer",
                                     epilog="Any flag not listed here goes to vLLM's server unchanged.")
    parser.add_argument("model")
    add_settings_flags(parser, defaults)
    parser.add_argument("--anchor-role", choices=tuple(EC_ROLES), default="single",
                        help="single: one instance does everything; encoder / decode: the two sides of vLLM's "
                        "encoder disaggregation (the encoder instance runs the vision tower and the solve, the "
                        "decode instance prefill and decode; put `vllm-videoanchor router` in front)")
    parser.add_argument("--anchor-ec-path", help="directory the encoder and decode instances share, where vLLM's "
                        "EC connector leaves encoder outputs (with their gains); required with --anchor-role")
    parser.add_argument("--media-urls", choices=POLICIES, default=policy_from_env(),
                        help="which http(s) media URLs the server fetches: any (vLLM's rules: --allowed-media-domains) "
                        "or public (hosts that are or resolve to loopback, private, link-local or other "
                        "non-global addresses are refused with a 400; redirects off unless "
                        f"VLLM_MEDIA_URL_ALLOW_REDIRECTS is set). Default: ${POLICY_ENV}, else any")
    parser.add_argument("--api-key", nargs="+", action="extend", help="passed to vLLM; also guards our layer")
    return parser


def ec_transfer_flags(role: str, ec_path: str | None) -> list[str]:
    """vLLM's --ec-transfer-config for a side of the disaggregated mode (its shared-storage
    EC connector, which keeps each encoder output under its multimodal hash: the anchor
    option is part of that hash, so anchored and plain outputs never mix)."""
    if EC_ROLES[role] is None:
        return []
    if not ec_path:
        raise ValueError(f"--anchor-role {role} needs --anchor-ec-path (a directory both instances share)")
    config = {"ec_connector": "ECExampleConnector", "ec_role": EC_ROLES[role],
              "ec_connector_extra_config": {"shared_storage_path": ec_path}}
    return ["--ec-transfer-config", json.dumps(config)]


def piecewise_graph_flags() -> list[str]:
    """The compilation config anchoring needs on CUDA, as vLLM flags: FULL CUDA graphs replay
    attention without Python, where the anchored path runs (the engine's own definition;
    imported here only, since it loads vLLM)."""
    from vllm_videoanchor.engine.attention.forward import PIECEWISE_GRAPHS

    return ["--compilation-config", json.dumps(PIECEWISE_GRAPHS)]


def _on_cuda() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cuda()


def server_command(argv: list[str], on_cuda: bool | None = None) -> tuple[list[str], dict[str, str]]:
    """(vLLM server argv, environment additions) for `serve`'s arguments (MODEL first).
    ValueError names a flag whose value cannot work."""
    defaults = served_defaults()
    args, rest = serve_parser(defaults).parse_known_args(argv)
    settings = settings_from_flags(args, defaults, **({"api_keys": args.api_key} if args.api_key else {}))
    if settings.solve_log is None:  # a served engine always reports its solves
        solve_log = os.path.join(tempfile.mkdtemp(prefix="videoanchor-"), "solves.sqlite")
        settings = settings.model_copy(update={"solve_log": solve_log})
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", args.model,
               "--middleware", MIDDLEWARE, "--trust-request-mm-kwargs", *rest,
               *ec_transfer_flags(args.anchor_role, args.anchor_ec_path)]
    user_compilation = any(arg.split("=", 1)[0].split(".", 1)[0] in COMPILATION_FLAGS or arg.startswith("-O")
                           for arg in rest)
    if not user_compilation and (_on_cuda() if on_cuda is None else on_cuda):
        command += piecewise_graph_flags()
    if args.api_key:
        command += ["--api-key", *args.api_key]
    env = settings.to_env()
    env[POLICY_ENV] = args.media_urls
    if args.media_urls == "public" and "VLLM_MEDIA_URL_ALLOW_REDIRECTS" not in os.environ:
        env["VLLM_MEDIA_URL_ALLOW_REDIRECTS"] = "0"  # a public URL must not redirect the fetch inward
    if args.anchor_role == "encoder":  # loads vLLM, as the flags above do
        from vllm_videoanchor.engine.compat import encoder_instance_env

        env.update(encoder_instance_env())
    return command, env


def main(argv: list[str]) -> None:
    """Replaces this process with vLLM's server (so signals and PID 1 are the server's)."""
    try:
        command, env = server_command(argv)
    except ValueError as exc:  # a flag that cannot work
        sys.exit(f"vllm-videoanchor serve: error: {exc}")
    environment = dict(os.environ, **env)
    if "PROMETHEUS_MULTIPROC_DIR" not in environment:
        environment["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="videoanchor-metrics-")
    os.execve(sys.executable, command, environment)
