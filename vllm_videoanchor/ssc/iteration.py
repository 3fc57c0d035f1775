"""The ADMM iteration of docs/method.md, written once for torch and for NumPy / CuPy.

Each backend brings the factored A-update (a `step` function from linear_system.py) and a
few array primitives (array_ops.py: `TorchOps`, `XpOps`); the updates
of C, E and the multipliers, over-relaxation and the stopping rule live here only, so the
backends cannot drift apart. Both solver modes (ssc/params.py `SOLVER_MODE`) run this loop:
"reference" with plain steps and a check every step, exactly the reference code;
"fast" over-relaxed, checked every few steps, so that on a GPU the loop queues work without
waiting for the device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .params import SolverMode


@dataclass
class Iterate:
    """Where the loop stopped."""

    C: object  # N x N, zero diagonal
    n_iter: int
    residual: float  # max_i sum_j |A_ij - C_ij| at the last check (A over-relaxed in the fast mode)
    converged: bool
    distance: float  # estimated ||C - C*||_F / ||C||_F at the last window's end (inf: no estimate yet)


class DistanceEstimate:
    """An a-posteriori estimate of the relative distance ||C_k - C*||_F / ||C_k||_F, on the host.

    ADMM on this program converges linearly once the active set has settled: over a window
    of w steps the change d_j = ||C_j - C_{j-1}||_F (C at window ends) shrinks by a factor
    q < 1, and then ||C_j - C*|| <= sum_{i>j} d_i <= q / (1 - q) d_j. q is estimated as the
    largest ratio d_i / d_{i-1} over the last `ratios` windows (the relaxed iterates do not
    contract evenly, and an early burst of contraction must not pass for the rate), so the
    estimate is inf until `ratios` + 1 windows have been seen and while the iterates are not
    contracting (q >= 1); 0 once C has not moved for `ratios` + 1 windows.
    """

    def __init__(self, ratios: int):
        self.ratios = ratios
        self.changes: list[float] = []

    def update(self, change: float, norm: float) -> float:
        """The estimate after one more window: `change` = d_j, `norm` = ||C_j||_F."""
        self.changes.append(change)
        recent = self.changes[-self.ratios - 1:]
        if len(recent) <= self.ratios:
            return math.inf
        if max(recent) == 0.0:  # C has not moved for ratios + 1 windows: a fixed point
            return 0.0
        if norm == 0.0 or min(recent[:-1]) == 0.0:
            return math.inf
        q = max(b / a for a, b in zip(recent, recent[1:]))
        if q >= 1.0:
            return math.inf
        return q / (1.0 - q) * change / norm


def stops(mode: SolverMode, residual: float, distance: float, eps: float | None, tol: float | None) -> bool:
    """The stopping test at a check (host floats only): residual < eps where eps is set, and,
    where tol is set, distance < tol or (modes with a residual_share) residual < tol *
    residual_share.

    Why the second alternative (issue 25, measured in docs/benchmarks.md): the reference stops
    on an absolute residual, so where its iteration contracts slowly (pure noise, outliers) it
    stops far from C*, and where it contracts fast, close to it. A relative distance tol
    alone cannot follow that: it over-solves the slow families (the estimate's rate is near 1
    while C drifts at constant speed) and it trusts an early, optimistic rate on
    near-duplicate tokens. The fast mode's own residual at tol / 64 stops the slow families
    about where the reference's eps does (in a third of its steps), and the estimate stops the
    families whose relaxed residual stays large (more features than tokens). Both alternatives
    scale with tol, so a tighter tol tightens both."""
    if eps is not None and not residual < eps:
        return False
    if tol is None or distance < tol:
        return True
    return mode.residual_share is not None and residual < tol * mode.residual_share


def iterate(ops, Y, step, mode: SolverMode, *, rho: float, eps: float | None, tol: float | None,
            e_threshold: float, max_iter: int, affine: bool) -> Iterate:
    """Run the ADMM from C = E = 0 and zero multipliers until the stopping rule holds or
    max_iter steps. `step(W, E, e_nonzero, v)` (the factored A-update) returns A and Y - Y A for
    R = lambda_z Y^T (Y - E) + W [+ 1 v^T].

    The rule, tested every mode.check_every steps: the primal residual below `eps` and the
    estimated relative distance to the optimum (`DistanceEstimate`, updated every
    mode.window steps) below `tol`; a tolerance given as None is not tested (the reference
    mode: eps alone, the fast mode: tol alone). In a mode with a `residual_share` (the fast
    one), the second test also passes when the primal residual is below
    tol * residual_share (`stops`). The estimate is computed in both modes (it is reported)
    and never changes the iterates: the reference mode stays the reference."""
    if eps is None and tol is None:
        raise ValueError("the ADMM needs a stopping tolerance: eps or tol")
    n = Y.shape[1]
    C = ops.zeros((n, n), Y)
    D2 = ops.zeros((n, n), Y)
    E = ops.zeros(Y.shape, Y)
    D1 = ops.zeros((n,), Y) if affine else None
    previous = ops.zeros((n, n), Y)  # C at the last window's end
    estimate = DistanceEstimate(mode.ratios)
    # The reference skips Y^T E while E = 0, which costs a device sync every step; the
    # checked-every-k modes always include it (a D x N x N product, or one subtraction).
    e_nonzero = mode.check_every != 1
    residual = distance = math.inf
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        check = n_iter % mode.check_every == 0 or n_iter == max_iter
        window_end = n_iter % mode.window == 0
        W = ops.penalty(C, D2, rho)
        A, residual_y = step(W, E, e_nonzero, (rho - D1) if affine else None)
        del W
        if affine:
            ops.add_scaled_(D1, A.sum(0) - 1.0, rho)
        if mode.relaxation != 1.0:
            A = ops.relax(A, C, mode.relaxation)
        C = ops.soft_threshold(ops.shifted(A, D2, rho), 1.0 / rho)
        ops.zero_diagonal(C)
        E_new = ops.soft_threshold(residual_y, e_threshold)
        del residual_y
        E = E_new if mode.e_relaxation == 1.0 else ops.relax(E_new, E, mode.e_relaxation)
        diff = ops.sub_(A, C)
        ops.add_scaled_(D2, diff, rho)
        if not (check or window_end):
            continue
        # everything this point needs from the device, in one transfer
        scalars = [ops.row_l1_max(diff)]
        if mode.check_every == 1:  # the reference: read the E flag with the residual, every step
            scalars.append(ops.flag(E))
        if window_end:
            scalars += [ops.change_and_keep(previous, C), ops.norm(C)]
        values = ops.host(*scalars)
        residual = values[0]
        if mode.check_every == 1:
            e_nonzero = values[1] > 0
        if window_end:
            distance = estimate.update(values[-2], values[-1])
        if check and stops(mode, residual, distance, eps, tol):
            return Iterate(C, n_iter, residual, True, distance)
    return Iterate(C, n_iter, residual, False, distance)
