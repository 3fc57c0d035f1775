"""ADMM for Sparse Subspace Clustering with an L1 error term (DESIGN.md section 1), in torch.

Y is D x N, tokens are columns; the solver returns C with Y ~ Y C. The reference solves the
N x N system of the A-update from scratch at every step. Its left-hand matrix never
changes, so here it is factored once: an explicit inverse when Y has full column rank
(D >= N), and Woodbury + Sherman-Morrison when Y has fewer rows than columns (D < N, or
after PCA), which makes every step O(N^2 D) instead of O(N^3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch

from .iteration import TorchOps, iterate
from .memory import check_fits
from .params import DEFAULTS, KNOB, SOLVER_MODE, lowrank_fits


@dataclass(frozen=True)
class AdmmStats:
    """What an ADMM solve reports besides C; `NO_ADMM` where no ADMM ran."""

    n_iter: int
    converged: bool  # stopped by the mode's tolerance, not by max_iter
    lambda_e: float
    lambda_z: float
    residual: float  # max_i sum_j |A_ij - C_ij| at the last check
    solver_mode: str = "reference"  # which iteration produced C (ssc/params.py SOLVER_MODE)
    # estimated ||C - C*||_F / ||C||_F where it stopped (iteration.DistanceEstimate; inf: none yet)
    distance: float = math.inf


NO_ADMM = AdmmStats(n_iter=0, converged=True, lambda_e=0.0, lambda_z=0.0, residual=0.0, solver_mode="none",
                    distance=0.0)


def forward_stats(attribute: str, suffix: str = ""):
    """Class decorator: read-only `n_iter`, `converged`, ... (AdmmStats' fields, plus
    `suffix`) reading `self.<attribute>`, so that holders of an AdmmStats keep the flat
    names without listing them again."""

    def decorate(cls):
        for stat in fields(AdmmStats):
            def read(self, name=stat.name):
                return getattr(getattr(self, attribute), name)

            setattr(cls, stat.name + suffix, property(read, doc=f"{attribute}.{stat.name}"))
        return cls

    return decorate


@forward_stats("stats")
@dataclass
class AdmmResult:
    """What one ADMM solve produced: C and its statistics (also readable as result.n_iter, ...)."""

    C: torch.Tensor  # N x N coefficients, Y ~ Y C, zero diagonal
    stats: AdmmStats


def data_scaled_regularizers(Y: torch.Tensor, gram: torch.Tensor) -> tuple[float, float]:
    """mu_e = min_i max_{j!=i} ||y_j||_1 and mu_z = min_i max_{j!=i} |y_i^T y_j|.

    The min over i of the max over the other columns is the second largest column norm,
    so mu_e needs no loop over tokens (the reference computes it with one).
    """
    col_l1 = Y.abs().sum(dim=0)
    mu_e = float(torch.topk(col_l1, 2).values[1])
    abs_gram = gram.abs()
    abs_gram.fill_diagonal_(0.0)  # |.| >= 0, so a zero never wins a max over other entries
    mu_z = float(abs_gram.max(dim=1).values.min())
    return mu_e, mu_z


def pca_project(Y: torch.Tensor, rank: int) -> torch.Tensor:
    """Mean-centred PCA of the columns of Y to `rank` rows (rank 0: Y unchanged)."""
    if rank == 0:
        return Y
    centred = Y - Y.mean(dim=1, keepdim=True)
    U, _, _ = torch.linalg.svd(centred.double(), full_matrices=False)
    return (U[:, :rank].T.to(Y.dtype)) @ centred


class _DenseSystem:
    """A = M R with M = (lambda_z G + rho I [+ rho 1 1^T])^-1 stored explicitly.

    Used when Y has at least as many rows as columns. The inverse is formed once, in
    float64 for accuracy; a step is then one N x N x N product plus the D x N x N
    products Y^T E (skipped while E = 0) and Y A.
    """

    def __init__(self, Y, gram, lambda_z, rho, affine):
        lhs = lambda_z * gram.double()
        lhs.diagonal().add_(rho)
        if affine:
            lhs.add_(rho)
        inv = torch.cholesky_inverse(torch.linalg.cholesky(lhs))
        m1 = inv.sum(dim=1)  # M 1
        # M (lz G) = M (lhs - rho I - rho 1 1^T) = I - rho M - rho (M 1) 1^T: no N^3 product
        P0 = torch.mul(inv, -rho)
        P0.diagonal().add_(1.0)
        if affine:
            P0.sub_(rho * m1[:, None])
        self.M = inv.to(Y.dtype)
        self.P0 = P0.to(Y.dtype)
        self.m1 = m1.to(Y.dtype) if affine else None
        self.Y = Y
        self.lambda_z = lambda_z

    def step(self, W, E, e_nonzero, v):
        """A and the residual Y - Y A, for R = lambda_z Y^T (Y - E) + W [+ 1 v^T]."""
        T = W
        if e_nonzero:
            T = torch.addmm(W, self.Y.T, E, alpha=-self.lambda_z)
        A = torch.addmm(self.P0, self.M, T)
        if v is not None:
            A.addr_(self.m1, v)
        return A, torch.addmm(self.Y, self.Y, A, alpha=-1.0)


class _LowRankSystem:
    """A = M R through Woodbury, for Y of shape r x N with r < N: O(r N^2) per step.

    The affine term rho 1 1^T is folded in as one more row of Y: with
    Yt = [Y; a 1^T], a = sqrt(rho / lz), the matrix is B = rho I + lz Yt^T Yt and
    R = lz Yt^T Ft + W with Ft = [Y - E; v^T / (lz a)]. With K = (rho/lz I + Yt Yt^T)^-1,
    the push-through identity and Woodbury give
        A = B^-1 R = (W + Yt^T K (rho Ft - Yt W)) / rho.
    This form keeps float32 convergence: the textbook (R - Yt^T K Yt R) / rho and a
    Sherman-Morrison affine update both cancel large terms and stall at ~1e-3.
    Y A is assembled from r-row products, so a step costs two r x N x N products.
    """

    def __init__(self, Y, lambda_z, rho, affine):
        r, n = Y.shape
        self.r, self.rho = r, rho
        self.v_scale = 1.0 / math.sqrt(rho * lambda_z)  # 1 / (lz a)
        Yt = Y.double()
        if affine:
            ones = torch.ones(1, n, dtype=torch.float64, device=Y.device)
            Yt = torch.cat([Yt, math.sqrt(rho / lambda_z) * ones])
        gram_small = Yt @ Yt.T
        lhs = gram_small.clone()
        lhs.diagonal().add_(rho / lambda_z)
        K = torch.cholesky_inverse(torch.linalg.cholesky(lhs))
        self.Y = Y
        self.Yt = Yt.to(Y.dtype)
        self.K = K.to(Y.dtype)
        self.gram_rows = gram_small[:r].to(Y.dtype)  # the rows of Yt Yt^T that give Y (.)

    def step(self, W, E, e_nonzero, v):
        rho = self.rho
        YW = self.Yt @ W
        F = self.Y - E if e_nonzero else self.Y
        if v is not None:
            F = torch.cat([F, (v * self.v_scale).unsqueeze(0)])
        H = self.K @ torch.sub(F, YW, alpha=1.0 / rho).mul_(rho)  # K (rho Ft - Yt W)
        A = torch.addmm(W, self.Yt.T, H).div_(rho)
        YA = torch.addmm(YW[: self.r], self.gram_rows, H).div_(rho)
        return A, torch.sub(self.Y, YA)


def lowrank_is_cheaper(d: int, n: int) -> bool:
    """Flops per step: Woodbury 4 r N (N + r) with r = d + 1, dense 2 N^3 + 4 d N^2.

    Woodbury wins when d < N / sqrt(2) or so; close to N the r x r x N products dominate.
    """
    r = d + 1
    return lowrank_fits(d, n) and 4 * r * n * (n + r) < 2 * n**3 + 4 * d * n**2


def resolve_solver(solver: str, d: int, n: int) -> str:
    """The A-update for Y of shape d x n: "auto" becomes the cheaper of "dense" and "lowrank"."""
    KNOB["solver"].check(solver)
    if solver == "auto":
        return "lowrank" if lowrank_is_cheaper(d, n) else "dense"
    if solver == "lowrank" and not lowrank_fits(d, n):
        raise ValueError(f"solver='lowrank' needs fewer features than samples (got {d} >= {n})")
    return solver


def resolve_mode(solver_mode: str, rho: float | None, eps: float | None,
                 tol: float | None = None) -> tuple[float, float | None, float | None]:
    """rho, eps and tol: the mode's where the caller left them None (ValueError for an
    unknown mode); eps or tol None afterwards: that test is not part of the mode's stop."""
    KNOB["solver_mode"].check(solver_mode)
    mode = SOLVER_MODE[solver_mode]
    return (mode.rho if rho is None else float(rho)), (mode.eps if eps is None else float(eps)), (
        mode.tol if tol is None else float(tol))


def run_admm(ops, Y, step, solver_mode: str, *, rho: float, eps: float | None, tol: float | None,
             lambda_e: float, lambda_z: float, max_iter: int, affine: bool) -> AdmmResult:
    """The mode's iteration (iteration.py) on a factored A-update `step`, as an AdmmResult;
    shared by the torch and the CuPy/NumPy solvers."""
    out = iterate(ops, Y, step, SOLVER_MODE[solver_mode], rho=rho, eps=eps, tol=tol,
                  e_threshold=lambda_e / lambda_z, max_iter=max_iter, affine=affine)
    return AdmmResult(out.C, AdmmStats(out.n_iter, out.converged, lambda_e, lambda_z, out.residual, solver_mode,
                                       out.distance))


def regularizers(alpha_e, alpha_z, mu_e, mu_z, lambda_e=None, lambda_z=None, *, dtype=None) -> tuple[float, float]:
    """lambda_e, lambda_z: alpha / mu (data-scaled) unless given; ValueError when unusable,
    also when one exceeds the largest number of the solve's `dtype` (torch or NumPy; a step
    would overflow at once)."""
    given = {"lambda_e": lambda_e is not None, "lambda_z": lambda_z is not None}
    if (lambda_e is None or lambda_z is None) and not (mu_e > 0 and mu_z > 0):
        raise ValueError(
            "cannot scale the regularisers: the tokens are zero or mutually orthogonal "
            f"(mu_e={mu_e}, mu_z={mu_z})"
        )
    lambda_e = alpha_e / mu_e if lambda_e is None else float(lambda_e)
    lambda_z = alpha_z / mu_z if lambda_z is None else float(lambda_z)
    if not all(math.isfinite(x) and x > 0 for x in (lambda_e, lambda_z)):
        raise ValueError(f"regularisers must be positive and finite, got {lambda_e=}, {lambda_z=}")
    if dtype is not None:
        largest = (torch.finfo if isinstance(dtype, torch.dtype) else np.finfo)(dtype).max
        for name, value in (("lambda_e", lambda_e), ("lambda_z", lambda_z)):
            if value > largest:
                culprit = name if given[name] else "alpha_" + name[-1]
                raise ValueError(f"{name}={value:.3g} exceeds {dtype}'s range: {culprit} is too large "
                                 "for these tokens")
    return lambda_e, lambda_z


def admm_ssc(
    Y: torch.Tensor,
    *,
    rho: float | None = DEFAULTS["rho"],
    alpha_e: float = DEFAULTS["alpha_e"],
    alpha_z: float = DEFAULTS["alpha_z"],
    eps: float | None = DEFAULTS["eps"],
    tol: float | None = DEFAULTS["tol"],
    max_iter: int = DEFAULTS["max_iter"],
    affine: bool = DEFAULTS["affine"],
    solver: str = DEFAULTS["solver"],
    solver_mode: str = DEFAULTS["solver_mode"],
    lambda_e: float | None = None,
    lambda_z: float | None = None,
) -> AdmmResult:
    """Solve the SSC program of DESIGN.md section 1 for Y (D x N).

    `solver_mode`: "reference" runs exactly the reference code's iteration; "fast" the
    over-relaxed one, checked every 10 steps (ssc/params.py SOLVER_MODE).
    `eps` bounds the primal residual, `tol` the estimated relative distance to the optimum
    (reported as result.distance); the solve stops when every tolerance that is set holds.
    `rho` / `eps` / `tol` None: the mode's values (the reference stops on eps, the fast mode
    on tol). `lambda_e` / `lambda_z` override the data-scaled values alpha / mu when given.
    `solver`: the A-update, "dense" (explicit inverse), "lowrank" (Woodbury, needs D < N) or
    "auto" (whichever needs fewer flops per step).
    """
    d, n = Y.shape
    solver = resolve_solver(solver, d, n)
    rho, eps, tol = resolve_mode(solver_mode, rho, eps, tol)
    check_fits(n, Y.element_size(), Y.device)

    gram = Y.T @ Y
    lambda_e, lambda_z = regularizers(alpha_e, alpha_z, *data_scaled_regularizers(Y, gram.clone()),
                                      lambda_e, lambda_z, dtype=Y.dtype)
    if solver == "dense":
        system = _DenseSystem(Y, gram, lambda_z, rho, affine)
    else:
        system = _LowRankSystem(Y, lambda_z, rho, affine)
    del gram
    return run_admm(TorchOps, Y, system.step, solver_mode, rho=rho, eps=eps, tol=tol, lambda_e=lambda_e,
                    lambda_z=lambda_z, max_iter=max_iter, affine=affine)
