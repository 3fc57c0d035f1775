"""Spectral step benchmark: on the solver's device (torch) against the host path it replaced.

    python benchmarks/spectral.py                                   # CPU, N = 256, 1024, 2048, D = 256
    python benchmarks/spectral.py --device cuda --sizes 2048 4096 16384 --features 4096

For every N: the default ADMM's C on video-like tokens (benchmarks/ssc.py's data; the solve
is timed too, so "solve + spectral" is what an anchored item costs), then the spectral step
timed several ways, all in the same run:
  device:   eigen_solver="auto" (eigh up to 256 tokens, subspace iteration beyond), each
            assign_labels ("discretize", the default; "cluster_qr"; "kmeans", on the host);
  eigh:     a dense eigendecomposition on the device (N <= --eigh-max only);
  host:     eigen_solver="arpack" + assign_labels="kmeans", scipy and scikit-learn on the
            host: the path before (its N x N affinity crosses to the host);
and the ratio host / device (N <= --host-max only), and the peak GPU memory of solve +
spectral (CUDA only).
"""

from __future__ import annotations

import argparse
import time

import torch
from ssc import print_markdown, timed, video_like_tokens

from vllm_videoanchor.ssc import admm_ssc, spectral_clustering


def bench_one(n: int, d: int, device: torch.device, n_clusters: int, eigh_max: int, host_max: int,
              tf32: bool) -> dict:
    torch.backends.cuda.matmul.allow_tf32 = tf32
    Y = video_like_tokens(n, d).float().to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result, t_solve = timed(lambda: admm_ssc(Y), device)
    C = result.C
    row = {"N": n, "D": d, "solve_s": t_solve, "iters": result.stats.n_iter}
    for assign in ("discretize", "cluster_qr", "kmeans"):
        spectral_clustering(C, n_clusters, assign_labels=assign)  # warm-up (kernels, caches)
        row[assign] = timed(lambda: spectral_clustering(C, n_clusters, assign_labels=assign), device)[1]
    if device.type == "cuda":
        row["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    row["eigh"] = (timed(lambda: spectral_clustering(C, n_clusters, eigen_solver="eigh"), device)[1]
                   if n <= eigh_max else None)
    row["host"] = (timed(lambda: spectral_clustering(C, n_clusters, eigen_solver="arpack", assign_labels="kmeans"),
                         device)[1] if n <= host_max else None)
    return row


def print_table(rows, device, tf32):
    seconds = lambda value: "-" if value is None else f"{value:.3f}"  # noqa: E731
    lines = [f"| {r['N']} | {r['D']} | {r['solve_s']:.3f} ({r['iters']}) | {r['discretize']:.3f} | "
             f"{r['cluster_qr']:.3f} | {r['kmeans']:.3f} | {seconds(r['eigh'])} | {seconds(r['host'])} | "
             f"{'-' if r['host'] is None else format(r['host'] / r['discretize'], '.1f') + 'x'} | "
             f"{r['solve_s'] + r['discretize']:.3f} | "
             f"{format(r['peak_gib'], '.2f') if 'peak_gib' in r else '-'} |" for r in rows]
    print_markdown(
        f"Spectral step on {device}{' (TF32 solve)' if tf32 else ''}: seconds per step, k = 24, video-like tokens",
        "| N | D | solve s (steps) | device: discretize | cluster_qr | kmeans | dense eigh | host: arpack + "
        "kmeans | host / device | solve + spectral | peak GiB |", lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 2048])
    parser.add_argument("--features", type=int, default=256)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--n-clusters", type=int, default=24)
    parser.add_argument("--eigh-max", type=int, default=4096, help="largest N timed with a dense eigh")
    parser.add_argument("--host-max", type=int, default=4096, help="largest N timed on the host path")
    parser.add_argument("--tf32", action="store_true", help="TF32 matmuls in the solve (CUDA)")
    args = parser.parse_args()
    device = torch.device(args.device)
    start = time.perf_counter()
    rows = [bench_one(n, args.features, device, args.n_clusters, args.eigh_max, args.host_max, args.tf32)
            for n in args.sizes]
    print_table(rows, device, args.tf32)
    print(f"\n({time.perf_counter() - start:.0f} s; torch {torch.__version__}, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
