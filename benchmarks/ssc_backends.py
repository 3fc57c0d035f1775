"""GPU solver benchmark: the torch and CuPy backends, float32 with and without TF32.

    python benchmarks/ssc_backends.py                       # CUDA: N = 2048, 4096, 16384, D = 4096
    python benchmarks/ssc_backends.py --smoke               # CPU, tiny: checks the script (NumPy stands in for CuPy)

For every N: seconds per ADMM solve (default mode, best of --repeats, once for solves over a
second, after a warm-up solve), steps, and where C* is computed (N <= --optimum-max-n) the
distance ||C - C*||_F / ||C*||_F of each configuration and its ratio to float32 without
TF32. C* is the same program solved in float64 to a 1e-7 residual and a 1e-8 estimated distance. TF32 is torch's
`allow_tf32` for torch, and CUPY_TF32=1 for CuPy (read when CuPy is imported, so that
configuration runs in a child process). The data are benchmarks/ssc.py's video-like tokens.
The table says which backend is faster where, and whether TF32 keeps the distance.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ssc import print_markdown, video_like_tokens  # noqa: E402

from vllm_videoanchor.ssc import admm_ssc  # noqa: E402
from vllm_videoanchor.ssc.cupy_admm import admm_ssc_cupy, admm_ssc_xp, cupy_available  # noqa: E402

CONFIGS = ("torch", "torch-tf32", "cupy", "cupy-tf32")


def solver_for(config: str, device: str):
    """A function Y (float32 torch tensor) -> AdmmResult for one configuration."""
    if config.startswith("torch"):
        return admm_ssc
    if device == "cpu":  # --smoke: the CuPy code path on NumPy arrays
        def numpy_solve(Y):
            result = admm_ssc_xp(Y.numpy(), xp=np)
            result.C = torch.from_numpy(result.C)
            return result
        return numpy_solve
    return admm_ssc_cupy


def progress(line: str) -> None:
    """One line on stderr at once, so that a run cut short still says how far it got."""
    print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure(config: str, sizes, features: int, device: str, repeats: int, keep_c: int, out_dir: str) -> list[dict]:
    """Rows of one configuration; C saved to out_dir for N <= keep_c (for the distance)."""
    torch.backends.cuda.matmul.allow_tf32 = config == "torch-tf32"
    solve = solver_for(config, device)
    solve(video_like_tokens(256, 64).float().to(device))  # warm-up: library handles, kernels
    rows = []
    for n in sizes:
        Y = video_like_tokens(n, features).float().to(device)
        best, result = float("inf"), None
        for attempt in range(repeats):
            if attempt and best > 1.0:  # a second-long solve times well once
                break
            synchronize(device)
            start = time.perf_counter()
            result = solve(Y)
            synchronize(device)
            best = min(best, time.perf_counter() - start)
        row = {"config": config, "N": n, "seconds": best, "steps": result.n_iter, "c_file": None}
        progress(f"{config} N={n}: {best * 1000:.1f} ms, {result.n_iter} steps")
        if n <= keep_c:
            row["c_file"] = os.path.join(out_dir, f"{config}-{n}.pt")
            torch.save(result.C.cpu(), row["c_file"])
        rows.append(row)
        del Y, result
    return rows


def run_config(config: str, args, out_dir: str) -> list[dict] | str:
    """The rows of `config`, measured here or (CuPy with TF32) in a child; a string says why not."""
    if config.startswith("cupy") and args.device == "cuda" and not cupy_available():
        return "CuPy not installed"
    if config != "cupy-tf32" or args.device == "cpu":
        return measure(config, args.sizes, args.features, args.device, args.repeats, args.optimum_max_n, out_dir)
    command = [sys.executable, __file__, "--worker", config, "--out-dir", out_dir, "--device", args.device,
               "--features", str(args.features), "--repeats", str(args.repeats),
               "--optimum-max-n", str(args.optimum_max_n), "--sizes", *map(str, args.sizes)]
    child = subprocess.run(command, env={**os.environ, "CUPY_TF32": "1"}, stdout=subprocess.PIPE, text=True)
    if child.returncode != 0:
        return f"failed with status {child.returncode} (its error is above)"
    return json.loads(child.stdout.strip().splitlines()[-1])


def distances(rows: list[dict], sizes, features: int, device: str) -> None:
    """Adds distance to C* (float64 optimum) to the rows whose C was kept."""
    for n in sizes:
        kept = [row for row in rows if row["N"] == n and row["c_file"]]
        if not kept:
            continue
        Y = video_like_tokens(n, features).to(device)
        optimum = admm_ssc(Y, eps=1e-7, tol=1e-8, max_iter=5000)
        progress(f"C* N={n}: {optimum.n_iter} steps, converged {optimum.converged}")
        optimum = optimum.C.cpu()
        for row in kept:
            C = torch.load(row["c_file"]).double()
            row["distance"] = float((C - optimum).norm() / optimum.norm())


def print_backends(rows: list[dict], skipped: dict, device: str, features: int) -> None:
    plain = {row["N"]: row for row in rows if row["config"] == "torch"}
    lines = []
    for row in sorted(rows, key=lambda r: (r["N"], CONFIGS.index(r["config"]))):
        base = plain.get(row["N"])
        distance = row.get("distance")
        ratio = distance / base["distance"] if distance is not None and base and base.get("distance") else None
        lines.append(f"| {row['N']} | {row['config']} | {row['seconds'] * 1000:.1f} | {row['steps']} "
                     f"| {base['seconds'] / row['seconds']:.2f}x | "
                     + (f"{distance:.2e} | {ratio:.3f} |" if ratio is not None else "- | - |"))
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print_markdown(f"SSC solver backends, {name}, float32, D = {features}, default mode: ms per ADMM solve",
                   "| N | backend | ms | steps | speed vs torch | distance to C* | distance / torch's |", lines)
    for config, why in skipped.items():
        print(f"{config}: {why}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096, 16384])
    parser.add_argument("--features", type=int, default=4096)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many (once for solves over 1 s)")
    parser.add_argument("--optimum-max-n", type=int, default=2048, help="compute C* (float64) up to this N")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny shapes: checks the script")
    parser.add_argument("--worker", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.device, args.sizes, args.features, args.repeats, args.optimum_max_n = "cpu", [96, 128], 80, 1, 96
    if args.worker:
        print(json.dumps(measure(args.worker, args.sizes, args.features, args.device, args.repeats,
                                 args.optimum_max_n, args.out_dir)))
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("torch sees no CUDA device (--smoke runs the script on the CPU)")
    rows, skipped = [], {}
    with tempfile.TemporaryDirectory() as out_dir:
        for config in CONFIGS:
            found = run_config(config, args, out_dir)
            if isinstance(found, str):
                skipped[config] = found
            else:
                rows += found
        distances(rows, args.sizes, args.features, args.device)
    print_backends(rows, skipped, args.device, args.features)


if __name__ == "__main__":
    main()
