"""ADMM for Sparse Subspace Clustering with an L1 error term (docs/method.md).

Y is D x N, tokens are columns; the solver returns C with Y ~ Y C. `solve` is the one
solver: the regularisers, the factored A-update (linear_system.py) and the iteration
(iteration.py), on torch tensors here (`admm_ssc`) and on CuPy or NumPy arrays in
cupy_admm.py, through the primitives of array_ops.py.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields

import numpy as np
import torch

from .array_ops import TorchOps
from .iteration import coupling_weight, iterate
from .linear_system import factor, lowrank_is_cheaper
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
    stopped_by: str = "max_iter"  # what ended it (iteration.STOPS; "none" where no ADMM ran)


NO_ADMM = AdmmStats(n_iter=0, converged=True, lambda_e=0.0, lambda_z=0.0, residual=0.0, solver_mode="none",
                    distance=0.0, stopped_by="none")


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


def data_scaled_regularizers(ops, Y, gram) -> tuple[float, float]:
    """mu_e = min_i max_{j!=i} ||y_j||_1 and mu_z = min_i max_{j!=i} |y_i^T y_j|.

    The min over i of the max over the other columns is the second largest column norm,
    so mu_e needs no loop over tokens (the reference computes it with one).
    """
    return ops.second_largest(ops.abs_col_sums(Y)), ops.off_diagonal_row_max_min(gram)


def pca_project(Y: torch.Tensor, rank: int) -> torch.Tensor:
    """Mean-centred PCA of the columns of Y to `rank` rows (rank 0: Y unchanged)."""
    if rank == 0:
        return Y
    centred = Y - Y.mean(dim=1, keepdim=True)
    U, _, _ = torch.linalg.svd(centred.double(), full_matrices=False)
    return (U[:, :rank].T.to(Y.dtype)) @ centred


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
        largest = float((torch.finfo if isinstance(dtype, torch.dtype) else np.finfo)(dtype).max)
        for name, value in (("lambda_e", lambda_e), ("lambda_z", lambda_z)):
            if value > largest:
                culprit = name if given[name] else "alpha_" + name[-1]
                raise ValueError(f"{name}={value:.3g} exceeds {dtype}'s range: {culprit} is too large "
                                 "for these tokens")
    return lambda_e, lambda_z


def solve(ops, Y, *, rho: float | None, alpha_e: float, alpha_z: float, eps: float | None, tol: float | None,
          max_iter: int, affine: bool, solver: str, solver_mode: str, lambda_e: float | None = None,
          lambda_z: float | None = None, time_budget: float | None = None) -> AdmmResult:
    """The SSC program for Y (D x N) on `ops`' arrays (array_ops.py): the one solver behind
    admm_ssc (torch) and cupy_admm.admm_ssc_xp (CuPy, NumPy). `time_budget`: seconds from
    this call after which the iteration stops with the iterate it reached (None: no bound)."""
    if time_budget is not None and (isinstance(time_budget, bool) or not isinstance(time_budget, (int, float))
                                    or not time_budget > 0):
        raise ValueError(f"time_budget must be a number of seconds > 0 or None, got {time_budget!r}")
    deadline = None if time_budget is None else time.monotonic() + time_budget
    d, n = Y.shape
    solver = resolve_solver(solver, d, n)
    rho, eps, tol = resolve_mode(solver_mode, rho, eps, tol)
    mode = SOLVER_MODE[solver_mode]
    check_fits(n, Y.dtype.itemsize, ops.device(Y), n_features=d)
    gram = Y.T @ Y
    lambda_e, lambda_z = regularizers(alpha_e, alpha_z, *data_scaled_regularizers(ops, Y, gram),
                                      lambda_e, lambda_z, dtype=Y.dtype)
    step = factor(ops, Y, gram, coupling_weight(mode, lambda_z), rho, affine, solver)
    del gram
    out = iterate(ops, Y, step, mode, rho=rho, eps=eps, tol=tol,
                  e_threshold=lambda_e / lambda_z, max_iter=max_iter, affine=affine, deadline=deadline)
    return AdmmResult(out.C, AdmmStats(out.n_iter, out.converged, lambda_e, lambda_z, out.residual, solver_mode,
                                       out.distance, out.stopped_by))


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
    time_budget: float | None = None,
) -> AdmmResult:
    """Solve the SSC program of docs/method.md for Y (D x N), a torch tensor.

    `solver_mode`: "reference" runs exactly the reference code's iteration; "fast" the
    one with the residual split off, over-relaxed, checked every 10 steps (ssc/params.py
    SOLVER_MODE; docs/method.md has both steps).
    `eps` bounds the primal residual, `tol` the estimated relative distance to the optimum
    (reported as result.distance); the solve stops when every tolerance that is set holds.
    `rho` / `eps` / `tol` None: the mode's values (the reference stops on eps, the fast mode
    on tol). `lambda_e` / `lambda_z` override the data-scaled values alpha / mu when given.
    `solver`: the A-update, "dense" (explicit inverse), "lowrank" (Woodbury, needs D < N) or
    "auto" (whichever needs fewer flops per step).
    `time_budget`: seconds the solve may take; past them the iteration stops with the iterate
    it reached (stats.converged False, stats.stopped_by "budget"). None: no bound.
    """
    return solve(TorchOps, Y, rho=rho, alpha_e=alpha_e, alpha_z=alpha_z, eps=eps, tol=tol, max_iter=max_iter,
                 affine=affine, solver=solver, solver_mode=solver_mode, lambda_e=lambda_e, lambda_z=lambda_z,
                 time_budget=time_budget)
