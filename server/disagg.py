"""`vllm-videoanchor disagg MODEL [--port 8000] [any serve / vLLM flags]`: the disaggregated
mode on one machine in one command.

Starts an encoder instance (`serve --anchor-role encoder`: vision tower and SSC solve) and a
prefill/decode instance (`serve --anchor-role decode`), which share one EC directory (the
encoder outputs, gain columns included) and one solve log (so the decode instance's
responses report the encoder instance's solves), waits until both are healthy, then runs
the router on --port in this process. Each instance has its own metrics directory, so each
/metrics shows its own solver counters. Ctrl-C or SIGTERM stops all three; on Linux the
instances also stop when this launcher is killed outright. On a GPU machine,
--encoder-devices / --decode-devices set CUDA_VISIBLE_DEVICES for each instance.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

import httpx

from vllm_videoanchor.settings import process_settings

from .launch import server_command


def _wait_healthy(processes: dict[str, tuple[subprocess.Popen, int]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    waiting = dict(processes)
    while waiting:
        for name, (process, port) in list(waiting.items()):
            if process.poll() is not None:
                raise RuntimeError(f"the {name} instance exited with code {process.returncode} before it was ready")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2.0).status_code == 200:
                    del waiting[name]
            except httpx.HTTPError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{', '.join(waiting)} not healthy after {timeout:.0f} s")
        time.sleep(1.0)


def _die_with_this_process() -> None:
    """Runs in each instance before it starts (Linux): the kernel sends it SIGTERM when this
    launcher dies, however it dies; a launcher killed outright would otherwise leave two
    servers holding their ports and memory."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _stop_on_sigterm(signum, frame) -> None:
    """SIGTERM before the router runs (uvicorn handles it after): leave through `finally`."""
    raise SystemExit(0)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="vllm-videoanchor disagg", description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("--host", default="0.0.0.0", help="the router's address")
    parser.add_argument("--port", type=int, default=8000, help="the router's port")
    parser.add_argument("--encoder-port", type=int, default=8100)
    parser.add_argument("--decode-port", type=int, default=8200)
    parser.add_argument("--ec-path", help="the shared EC directory (default: a new temporary one)")
    parser.add_argument("--encoder-devices", help="CUDA_VISIBLE_DEVICES of the encoder instance")
    parser.add_argument("--decode-devices", help="CUDA_VISIBLE_DEVICES of the decode instance")
    parser.add_argument("--startup-timeout", type=float, default=1800.0)
    args, rest = parser.parse_known_args(argv)
    work = tempfile.mkdtemp(prefix="videoanchor-disagg-")
    ec_path = args.ec_path or os.path.join(work, "ec")
    os.makedirs(ec_path, exist_ok=True)
    # both instances write and read one solve log (given here, or in this environment)
    solve_log = process_settings().solve_log or os.path.join(work, "solves.sqlite")

    processes: dict[str, tuple[subprocess.Popen, int]] = {}
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        for role, port, devices in (("encoder", args.encoder_port, args.encoder_devices),
                                    ("decode", args.decode_port, args.decode_devices)):
            command, settings_env = server_command([args.model, "--port", str(port), "--anchor-role", role,
                                                    "--anchor-ec-path", ec_path, "--anchor-solve-log", solve_log,
                                                    *rest])
            env = dict(os.environ, **settings_env)
            env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=f"metrics-{role}-", dir=work)
            if devices is not None:
                env["CUDA_VISIBLE_DEVICES"] = devices
            processes[role] = (subprocess.Popen(command, env=env, preexec_fn=_die_with_this_process
                                                if sys.platform.startswith("linux") else None), port)
        _wait_healthy(processes, args.startup_timeout)
        from .router import main as router

        print(f"vllm-videoanchor disagg: encoder :{args.encoder_port}, decode :{args.decode_port}, "
              f"router :{args.port}", flush=True)
        router(["--encoder", f"http://127.0.0.1:{args.encoder_port}",
                "--decode", f"http://127.0.0.1:{args.decode_port}", "--host", args.host, "--port", str(args.port)])
        return 0
    except RuntimeError as exc:
        print(f"vllm-videoanchor disagg: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for process, _ in processes.values():
            if process.poll() is None:
                process.terminate()
        for process, _ in processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
