"""The ADMM iteration of docs/method.md, written once for torch and for NumPy / CuPy.

Each backend brings the factored A-update (a `step` function from linear_system.py) and a
few array primitives (array_ops.py: `TorchOps`, `XpOps`); the updates
of C, E and the multipliers, over-relaxation and the stopping rule live here only, so the
backends cannot drift apart. Both solver modes (ssc/params.py `SOLVER_MODE`) run this loop:
"reference" with plain steps, the reference's error update and a check every step, exactly
the reference code; "fast" with the residual split off (`SplitResidual`), over-relaxed,
checked every few steps, so that on a GPU the loop queues work without waiting for the
device.
"""

from __future__ import annotations

import math
import time
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
    stopped_by: str = "max_iter"  # one of STOPS


# what ended a solve: its distance test, its residual test (eps, or the fast mode's tol *
# residual_share), max_iter, or the caller's time budget (the iterate reached is returned)
STOPS = ("distance", "residual", "max_iter", "budget")


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


def stops(mode: SolverMode, residual: float, distance: float, eps: float | None, tol: float | None) -> str | None:
    """The stopping test at a check (host floats only): residual < eps where eps is set, and,
    where tol is set, distance < tol or (modes with a residual_share) residual < tol *
    residual_share. Returns the test that stopped the solve ("distance" or "residual"; None:
    go on).

    Why two alternatives (issue 25, measured in docs/benchmarks.md): the reference stops on
    an absolute residual, so its distance to C* at the stop varies 70-fold across token sets
    (5.9e-3 to 0.42 on the benchmark's families). The estimate follows the iterates' own
    contraction and stops where they settle fast (more features than tokens); where they
    drift at constant speed its rate is near 1 and it would over-solve, and the fast mode's
    own residual below tol * residual_share stops those about where the reference's eps does,
    in a fifth to a half of its steps. Both scale with tol, so a tighter tol tightens both.
    Each alone stopped at most 19 of 24 measured sets within the reference's distance in half
    its steps; the two together, at the defaults, 33 of 33 calibration sets and 10 of 12 held
    out (the other two one check late)."""
    if eps is not None and not residual < eps:
        return None
    if tol is None:
        return "residual"
    if distance < tol:
        return "distance"
    return "residual" if mode.residual_share is not None and residual < tol * mode.residual_share else None


class AlternatingError:
    """The reference's error update: E = tau_{lambda_e / lambda_z}(Y - Y A), the minimiser
    over E with A fixed, after each A-step. The A-step fits Y - E."""

    def __init__(self, ops, Y, threshold: float):
        self.ops, self.threshold = ops, threshold
        self.E = ops.zeros(Y.shape, Y)

    def target(self):
        return self.E

    def update(self, residual_y, relaxation: float) -> None:
        """`residual_y` = Y - Y A of this step (the reference does not relax E)."""
        self.E = self.ops.soft_threshold(residual_y, self.threshold)


class SplitResidual:
    """The fast mode's error update: the residual R = Y - Y A as a variable of its own.

    The program min ||C||_1 + lambda_e ||E||_1 + lambda_z / 2 ||Y - Y C - E||^2 is, over E,
    min ||C||_1 + h(Y - Y C) with h the Huber loss lambda_z huber_{lambda_e / lambda_z}. Split
    as A = C and R = Y - Y A, it is a two-block ADMM: (A) then (C, R), with the penalty
    w = weight * lambda_z on the second constraint and its scaled multiplier U. The A-step is
    the reference's linear system with w in place of lambda_z and R - U in place of E; the
    R-step is the proximal map of h, R = P - lambda_z / (lambda_z + w) clamp(P, -b, b) with
    P = Y - Y A + U and b = (lambda_e / lambda_z) (lambda_z + w) / w; the relaxed Y A of
    over-relaxation enters R and U as the relaxed A enters C and D2. The reference's update
    (AlternatingError) is this with one exact minimisation over E in place of the split,
    which is what makes it slow where Y A and E compete (docs/benchmarks.md).
    """

    def __init__(self, ops, Y, threshold: float, weight: float):
        self.ops = ops
        self.R = ops.zeros(Y.shape, Y)
        self.U = ops.zeros(Y.shape, Y)
        self.share = 1.0 / (1.0 + weight)  # lambda_z / (lambda_z + w)
        self.bound = threshold * (1.0 + weight) / weight

    def target(self):
        return self.R - self.U

    def update(self, residual_y, relaxation: float) -> None:
        ops = self.ops
        V = residual_y if relaxation == 1.0 else ops.relax(residual_y, self.R, relaxation)  # Y - Y A_hat
        P = V + self.U
        self.R = ops.huber_prox(P, self.bound, self.share)
        ops.add_scaled_(self.U, ops.sub_(V, self.R), 1.0)


def coupling_weight(mode: SolverMode, lambda_z: float) -> float:
    """The weight of Y^T Y in the A-step's system: lambda_z, or the split's penalty."""
    return lambda_z if mode.residual_weight is None else mode.residual_weight * lambda_z


def iterate(ops, Y, step, mode: SolverMode, *, rho: float, eps: float | None, tol: float | None,
            e_threshold: float, max_iter: int, affine: bool, deadline: float | None = None) -> Iterate:
    """Run the ADMM from C = E = 0 and zero multipliers until the stopping rule holds or
    max_iter steps. `step(W, E, e_nonzero, v)` (the factored A-update, weighted by
    `coupling_weight`) returns A and Y - Y A for R = weight Y^T (Y - E) + W [+ 1 v^T].

    The rule, tested every mode.check_every steps: the primal residual below `eps` and the
    estimated relative distance to the optimum (`DistanceEstimate`, updated every
    mode.window steps) below `tol`; a tolerance given as None is not tested (the reference
    mode: eps alone, the fast mode: tol alone). In a mode with a `residual_share` (the fast
    one), the second test also passes when the primal residual is below
    tol * residual_share (`stops`). The estimate is computed in both modes (it is reported)
    and never changes the iterates: the reference mode stays the reference.

    `deadline` (a time.monotonic() value; None: none) ends the loop after the first step that
    finishes past it, with the iterate reached (`stopped_by` "budget"): the host clock is
    read every step, which costs no device sync (on a GPU the queued steps run on)."""
    if eps is None and tol is None:
        raise ValueError("the ADMM needs a stopping tolerance: eps or tol")
    n = Y.shape[1]
    C = ops.zeros((n, n), Y)
    D2 = ops.zeros((n, n), Y)
    error = (AlternatingError(ops, Y, e_threshold) if mode.residual_weight is None
             else SplitResidual(ops, Y, e_threshold, mode.residual_weight))
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
        A, residual_y = step(W, error.target(), e_nonzero, (rho - D1) if affine else None)
        del W
        if affine:
            ops.add_scaled_(D1, A.sum(0) - 1.0, rho)
        if mode.relaxation != 1.0:
            A = ops.relax(A, C, mode.relaxation)
        C = ops.soft_threshold(ops.shifted(A, D2, rho), 1.0 / rho)
        ops.zero_diagonal(C)
        error.update(residual_y, mode.relaxation)
        del residual_y
        diff = ops.sub_(A, C)
        ops.add_scaled_(D2, diff, rho)
        if check or window_end:
            # everything this point needs from the device, in one transfer
            scalars = [ops.row_l1_max(diff)]
            if mode.check_every == 1:  # the reference: read the E flag with the residual, every step
                scalars.append(ops.flag(error.target()))
            if window_end:
                scalars += [ops.change_and_keep(previous, C), ops.norm(C)]
            values = ops.host(*scalars)
            residual = values[0]
            if mode.check_every == 1:
                e_nonzero = values[1] > 0
            if window_end:
                distance = estimate.update(values[-2], values[-1])
            stopped_by = stops(mode, residual, distance, eps, tol) if check else None
            if stopped_by:
                return Iterate(C, n_iter, residual, True, distance, stopped_by)
        if deadline is not None and n_iter < max_iter and time.monotonic() >= deadline:
            return Iterate(C, n_iter, residual, False, distance, "budget")
    return Iterate(C, n_iter, residual, False, distance, "max_iter")
