"""Solver benchmark: our ADMM against the reference's per-iteration full solve, same run.

    python benchmarks/ssc.py                      # CPU, N in 256..4096, D = 3584
    python benchmarks/ssc.py --device cuda --sizes 1024 2048 4096 8192 16384

For every N (and with / without PCA) it prints seconds per solve and iterations of
(a) the baseline: the reference code's loop, which forms and solves the N x N system at
    every step, in float64 as the reference's NumPy code does;
(b) our solver (float32 default and float64), plus the spectral clustering step;
and the ratio (a) / (b). Where the baseline would run for minutes, it is timed for
--baseline-iters steps and scaled to the iterations our float64 solve needed (the two run
the same iteration, so they need the same number of steps); such rows are marked '*'.
The data are video-like tokens: a union of low-dimensional subspaces in a 64-dimensional
space, embedded randomly in D dimensions, with noise.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from vllm_videoanchor.ssc import admm_ssc, pca_project, spectral_clustering
from vllm_videoanchor.ssc.params import DEFAULTS


def video_like_tokens(n, d, n_subspaces=24, dim=12, ambient=64, noise=0.05, seed=0):
    """(D x N) columns from `n_subspaces` random `dim`-dim subspaces of R^ambient, in R^d."""
    rng = np.random.default_rng(seed)
    sizes = np.full(n_subspaces, n // n_subspaces)
    sizes[: n % n_subspaces] += 1
    blocks = []
    for size in sizes:
        basis, _ = np.linalg.qr(rng.standard_normal((ambient, dim)))
        blocks.append(basis @ rng.standard_normal((dim, size)))
    X = np.concatenate(blocks, axis=1)
    embed, _ = np.linalg.qr(rng.standard_normal((d, ambient)))
    Y = embed @ X + noise * rng.standard_normal((d, n)) * math.sqrt(ambient / d)
    return torch.tensor(Y)


def soft_threshold(v, t):
    return torch.sign(v) * torch.clamp(v.abs() - t, min=0.0)


def baseline_admm(
    Y,
    rho=DEFAULTS["rho"],
    alpha_e=DEFAULTS["alpha_e"],
    alpha_z=DEFAULTS["alpha_z"],
    eps=DEFAULTS["eps"],
    max_iter=DEFAULTS["max_iter"],
):
    """The reference code's loop: the full system is formed and solved at every step."""
    d, n = Y.shape
    norms = Y.abs().sum(dim=0).tolist()
    mu_e = min(max(norms[j] for j in range(n) if j != i) for i in range(n))  # its Python loop
    dots = (Y.T @ Y).abs()
    dots.fill_diagonal_(0)
    mu_z = float(dots.max(dim=1).values.min())
    lambda_e, lambda_z = alpha_e / mu_e, alpha_z / mu_z
    ones = torch.ones(n, 1, dtype=Y.dtype, device=Y.device)
    eye = torch.eye(n, dtype=Y.dtype, device=Y.device)
    C = torch.zeros(n, n, dtype=Y.dtype, device=Y.device)
    E = torch.zeros_like(Y)
    D1 = torch.zeros(n, 1, dtype=Y.dtype, device=Y.device)
    D2 = torch.zeros_like(C)
    it = 0
    for it in range(1, max_iter + 1):
        lhs = lambda_z * Y.T @ Y + rho * eye + rho * ones @ ones.T
        rhs = lambda_z * Y.T @ (Y - E) + rho * (ones @ ones.T + C) - ones @ D1.T - D2
        A = torch.linalg.solve(lhs, rhs)
        C = soft_threshold(A + D2 / rho, 1 / rho)
        C.fill_diagonal_(0)
        E = soft_threshold(Y - Y @ A, lambda_e / lambda_z)
        D1 = D1 + rho * (A.T @ ones - ones)
        D2 = D2 + rho * (A - C)
        if float((A - C).abs().sum(dim=1).max()) < eps:
            break
    return C, it


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - start


def bench_one(n, d, pca_rank, device, baseline_iters, baseline_budget, n_clusters, f64_max_n):
    Y64 = pca_project(video_like_tokens(n, d).to(device), pca_rank)
    Y32 = Y64.float()
    row = {"N": n, "D": d, "pca": pca_rank or "-"}

    ours32, t32 = timed(lambda: admm_ssc(Y32), device)
    if n <= f64_max_n:
        ours64, t64 = timed(lambda: admm_ssc(Y64), device)
    else:  # too slow on small CPUs: same iteration, so the float32 count stands in
        ours64, t64 = ours32, float("nan")
    (_, _), t_cluster = timed(lambda: spectral_clustering(ours32.C, n_clusters), device)
    row.update(ours_f32_s=t32, ours_f32_iters=ours32.n_iter, ours_f64_s=t64,
               ours_f64_iters=ours64.n_iter, cluster_s=t_cluster)

    _, t_few = timed(lambda: baseline_admm(Y64, max_iter=baseline_iters), device)
    if t_few / baseline_iters * ours64.n_iter <= baseline_budget:
        (C_base, base_iters), t_base = timed(lambda: baseline_admm(Y64), device)
        row["extrapolated"] = False
        scale = C_base.abs().max()
        row["diff_f64"] = float((ours64.C.double() - C_base).abs().max() / scale)
        row["diff_f32"] = float((ours32.C.double() - C_base).abs().max() / scale)
    else:
        base_iters = ours64.n_iter
        t_base = t_few / baseline_iters * base_iters
        row["extrapolated"] = True
        row["diff_f64"] = row["diff_f32"] = float("nan")
    row.update(base_s=t_base, base_iters=base_iters,
               ratio_f32=t_base / t32, ratio_f64=t_base / t64)
    return row


def print_table(rows, device):
    print(f"\nSSC solver, {device} ({torch.get_num_threads()} threads); seconds per solve")
    head = ("| N | D | PCA | baseline f64 s (iters) | ours f32 s (iters) | ours f64 s (iters) "
            "| clustering s | ratio f32 | ratio f64 | coef_ rel diff f64 / f32 |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        star = "*" if r["extrapolated"] else ""
        print(
            f"| {r['N']} | {r['D']} | {r['pca']} | {r['base_s']:.2f}{star} ({r['base_iters']}) "
            f"| {r['ours_f32_s']:.3f} ({r['ours_f32_iters']}) | {r['ours_f64_s']:.3f} ({r['ours_f64_iters']}) "
            f"| {r['cluster_s']:.3f} | {r['ratio_f32']:.1f}x | {r['ratio_f64']:.1f}x "
            f"| {r['diff_f64']:.1e} / {r['diff_f32']:.1e} |"
        )
    if any(r["extrapolated"] for r in rows):
        print("* baseline timed for a few steps and scaled to the iteration count")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 2048, 4096])
    parser.add_argument("--features", type=int, default=3584)
    parser.add_argument("--pca", type=int, nargs="+", default=[0, 256],
                        help="PCA ranks to try (0: none)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--n-clusters", type=int, default=24)
    parser.add_argument("--baseline-iters", type=int, default=3,
                        help="steps to time the baseline for, where it is not run in full")
    parser.add_argument("--f64-max-n", type=int, default=2048,
                        help="also time our float64 solve up to this N")
    parser.add_argument("--baseline-budget", type=float, default=60.0,
                        help="run the baseline to convergence when it should take at most this "
                        "many seconds; else time --baseline-iters steps and scale")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = []
    for pca_rank in args.pca:
        for n in args.sizes:
            if pca_rank >= n:
                continue
            rows.append(bench_one(n, args.features, pca_rank, device, args.baseline_iters,
                                  args.baseline_budget, args.n_clusters, args.f64_max_n))
            print_table(rows[-1:], device)
    print_table(rows, device)


if __name__ == "__main__":
    main()
