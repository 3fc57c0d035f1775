"""Solver benchmark: our ADMM (both solver modes) against the reference's per-iteration
full solve, and the modes' distance to the optimum, all measured in the same run.

    python benchmarks/ssc.py                      # CPU, N in 256..4096, D = 3584
    python benchmarks/ssc.py --device cuda --sizes 2048 4096 8192 16384 --features 4096
    python benchmarks/ssc.py --modes              # steps and distance to C*, per data family
    python benchmarks/ssc.py --modes --sets held-out   # the same on the stopping tables' sets

Timing table, for every N (and with / without PCA): seconds per solve and iterations of
(a) the baseline: the reference code's loop, which forms and solves the N x N system at
    every step, in float64 as the reference's NumPy code does;
(b) our solver in float32, reference mode (the same iteration as (a), factored once) and
    fast mode (the default), plus the spectral clustering step;
and the ratios (a) / (b). Where the baseline would run for minutes, it is timed for
--baseline-iters steps and scaled to the iterations our reference mode needed (the same
iteration, so the same number of steps); such rows are marked '*'.
The data are video-like tokens: a union of low-dimensional subspaces in a 64-dimensional
space, embedded randomly in D dimensions, with noise.

Modes table (--modes): on the families of vllm_videoanchor/testing/ssc_data.py (structured
subspaces, near-duplicate tokens, pure noise, outliers, unequal subspace dimensions), steps
of each mode and its distance ||C - C*||_F / ||C*||_F to the optimum C*, the same program
solved to a 1e-7 residual and a 1e-8 estimated distance (by the fast iteration: the
reference one needs 10^4+ steps), the ratios default / reference, and the default mode's own
estimate of its distance (it stops on that below tol, or on its residual below tol / 20:
ssc/iteration.py `stops`).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from vllm_videoanchor.ssc import admm_ssc, pca_project, spectral_clustering
from vllm_videoanchor.ssc.params import SOLVER_MODE
from vllm_videoanchor.testing.ssc_data import FAMILIES, token_family

REFERENCE = SOLVER_MODE["reference"]


# The token sets (family, N, D, seed) of docs/benchmarks.md's stopping tables: the default
# mode's settings were chosen on the first, the second was measured once afterwards.
CALIBRATION_SETS = (
    ("subspaces", 64, 64, 0), ("near_duplicates", 64, 64, 0), ("noise", 64, 64, 0),
    ("outliers", 64, 64, 0), ("unequal_dims", 64, 192, 0), ("unequal_dims", 225, 768, 0),
    ("unequal_dims", 100, 300, 1), ("outliers", 128, 160, 1), ("noise", 64, 128, 1),
    ("subspaces", 96, 256, 2), ("subspaces", 128, 384, 3), ("near_duplicates", 64, 192, 0),
    ("subspaces", 256, 128, 0), ("near_duplicates", 256, 128, 0), ("noise", 256, 128, 0),
    ("outliers", 256, 128, 0), ("unequal_dims", 256, 128, 0), ("unequal_dims", 64, 64, 0),
    ("subspaces", 200, 128, 5), ("noise", 96, 192, 4), ("outliers", 150, 300, 6),
    ("unequal_dims", 150, 150, 7), ("near_duplicates", 120, 96, 8), ("noise", 128, 96, 9),
    ("subspaces", 256, 128, 10), ("unequal_dims", 300, 1024, 11), ("outliers", 96, 64, 12),
    ("noise", 100, 400, 13), ("near_duplicates", 225, 768, 0), ("near_duplicates", 128, 256, 2),
    ("noise", 96, 192, 3), ("unequal_dims", 150, 450, 2), ("outliers", 96, 192, 2),
)
HELD_OUT_SETS = (
    ("near_duplicates", 200, 600, 21), ("near_duplicates", 160, 160, 22), ("near_duplicates", 96, 384, 23),
    ("noise", 150, 600, 24), ("subspaces", 160, 480, 25), ("outliers", 200, 100, 26),
    ("unequal_dims", 128, 512, 27), ("noise", 200, 150, 28), ("subspaces", 300, 200, 29),
    ("outliers", 120, 240, 30), ("near_duplicates", 300, 1200, 31), ("unequal_dims", 250, 250, 32),
)


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
    rho=REFERENCE.rho,
    alpha_e=800.0,
    alpha_z=800.0,
    eps=REFERENCE.eps,
    max_iter=10000,
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


def bench_one(n, d, pca_rank, device, baseline_iters, baseline_budget, n_clusters):
    Y64 = pca_project(video_like_tokens(n, d).to(device), pca_rank)
    Y32 = Y64.float()
    row = {"N": n, "D": d, "pca": pca_rank or "-"}
    reference, t_ref = timed(lambda: admm_ssc(Y32, solver_mode="reference"), device)
    fast, t_fast = timed(lambda: admm_ssc(Y32), device)
    (_, _), t_cluster = timed(lambda: spectral_clustering(fast.C, n_clusters), device)
    row.update(ref_s=t_ref, ref_iters=reference.n_iter, fast_s=t_fast, fast_iters=fast.n_iter, cluster_s=t_cluster)

    _, t_few = timed(lambda: baseline_admm(Y64, max_iter=baseline_iters), device)
    if t_few / baseline_iters * reference.n_iter <= baseline_budget:
        (_, base_iters), t_base = timed(lambda: baseline_admm(Y64), device)
        row["extrapolated"] = False
    else:
        base_iters = reference.n_iter
        t_base = t_few / baseline_iters * base_iters
        row["extrapolated"] = True
    row.update(base_s=t_base, base_iters=base_iters, ratio_ref=t_base / t_ref, ratio_fast=t_base / t_fast)
    return row


def print_markdown(title, head, lines):
    """A titled markdown table: the header row, its rule, then the given rows."""
    print(f"\n{title}")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for line in lines:
        print(line)


def print_table(rows, device):
    print_markdown(
        f"SSC solver, {device} ({torch.get_num_threads()} threads); seconds per solve, float32 unless said",
        "| N | D | PCA | baseline f64 s (iters) | reference mode s (iters) | fast mode s (iters) "
        "| clustering s | baseline / reference | baseline / fast |",
        [f"| {r['N']} | {r['D']} | {r['pca']} | {r['base_s']:.2f}{'*' if r['extrapolated'] else ''} "
         f"({r['base_iters']}) | {r['ref_s']:.3f} ({r['ref_iters']}) | {r['fast_s']:.3f} ({r['fast_iters']}) "
         f"| {r['cluster_s']:.3f} | {r['ratio_ref']:.1f}x | {r['ratio_fast']:.1f}x |" for r in rows],
    )
    if any(r["extrapolated"] for r in rows):
        print("* baseline timed for a few steps and scaled to the iteration count")


def modes_row(family, n, d, device, seed=0):
    """Steps, seconds and distance to C* of both modes on one token set (float64)."""
    Y = torch.tensor(token_family(family, n, d, seed=seed), device=device)
    optimum = admm_ssc(Y, eps=1e-7, tol=1e-8, max_iter=20000)
    row = {"family": family, "N": n, "D": d, "seed": seed, "optimum_converged": optimum.converged}
    for mode in ("reference", "fast"):
        result, seconds = timed(lambda: admm_ssc(Y, solver_mode=mode), device)
        distance = float((result.C - optimum.C).norm() / optimum.C.norm())
        row[mode] = {"iters": result.n_iter, "seconds": seconds, "distance": distance, "estimate": result.distance}
    return row


def print_modes(rows, device):
    lines = []
    for r in rows:
        ref, fast = r["reference"], r["fast"]
        note = "" if r["optimum_converged"] else " (C* not converged)"
        steps, distance = fast["iters"] / ref["iters"], fast["distance"] / ref["distance"]
        misses = [what for what, ok in (("steps", steps <= 0.5), ("distance", distance <= 1.05)) if not ok]
        lines.append(f"| {r['family']} | {r['N']} | {r['D']}{note} | {r['seed']} "
                     f"| {ref['iters']} ({ref['seconds']:.2f}) "
                     f"| {fast['iters']} ({fast['seconds']:.2f}) | {steps:.2f} "
                     f"| {ref['distance']:.2e} | {fast['distance']:.2e} | {distance:.2f} | {fast['estimate']:.2e} "
                     f"| {', '.join(misses) or '-'} |")
    print_markdown(
        f"Solver modes, {device} ({torch.get_num_threads()} threads), float64: steps and distance to C* "
        f"(default tol {SOLVER_MODE['fast'].tol:g})",
        "| family | N | D | seed | reference steps (s) | default steps (s) | steps default / reference "
        "| distance reference | distance default | default / reference distance | default's estimate "
        "| misses (steps > 0.5x, distance > 1.05x) |",
        lines,
    )


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
    parser.add_argument("--modes", action="store_true",
                        help="print the modes table (steps and distance to C* per data family) instead")
    parser.add_argument("--mode-shapes", nargs="+", default=["256x128", "512x256", "225x768", "256x1024", "512x2048"],
                        help="NxD token sets of the modes table (225x768: issue 25's case; the last three have "
                        "more features than tokens: docs/benchmarks.md)")
    parser.add_argument("--sets", choices=("calibration", "held-out"),
                        help="with --modes: the token sets of docs/benchmarks.md's stopping tables instead of "
                        "--mode-shapes (CALIBRATION_SETS, HELD_OUT_SETS; C* by the fast iteration here)")
    parser.add_argument("--baseline-budget", type=float, default=60.0,
                        help="run the baseline to convergence when it should take at most this "
                        "many seconds; else time --baseline-iters steps and scale")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.modes:
        if args.sets:
            sets = CALIBRATION_SETS if args.sets == "calibration" else HELD_OUT_SETS
        else:
            sets = [(family, *map(int, shape.split("x")), 0) for shape in args.mode_shapes for family in FAMILIES]
        rows = []
        for family, n, d, seed in sets:
            rows.append(modes_row(family, n, d, device, seed))
            print_modes(rows[-1:], device)
        print_modes(rows, device)
        return
    rows = []
    for pca_rank in args.pca:
        for n in args.sizes:
            if pca_rank >= n:
                continue
            rows.append(bench_one(n, args.features, pca_rank, device, args.baseline_iters,
                                  args.baseline_budget, args.n_clusters))
            print_table(rows[-1:], device)
    print_table(rows, device)


if __name__ == "__main__":
    main()
