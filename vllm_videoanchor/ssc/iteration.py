"""The ADMM iteration of DESIGN.md section 1, written once for torch and for NumPy / CuPy.

Each backend brings the factored A-update (a `step` function: admm.py for torch tensors,
cupy_admm.py for xp arrays) and a few array primitives (`TorchOps`, `XpOps`); the updates
of C, E and the multipliers, over-relaxation and the stopping rule live here only, so the
backends cannot drift apart. Both solver modes (ssc/params.py `SOLVER_MODE`) run this loop:
"reference" with plain steps and a check every step, exactly the reference code;
"fast" over-relaxed, checked every few steps, so that on a GPU the loop queues work without
waiting for the device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .params import SolverMode


class TorchOps:
    """The loop's primitives on torch tensors, in place where the loop allows it (memory at
    large N), in the exact arithmetic of the reference solver."""

    @staticmethod
    def zeros(shape, like):
        return like.new_zeros(shape)

    @staticmethod
    def zero_diagonal(C):
        C.fill_diagonal_(0.0)

    @staticmethod
    def soft_threshold(v, t):
        """tau_t(v) = sign(v) max(|v| - t, 0), written as v - clamp(v, -t, t) (one pass fewer)."""
        return v - v.clamp(-t, t)

    @staticmethod
    def penalty(C, D2, rho):
        """rho C - D2."""
        return torch.sub(C, D2, alpha=1.0 / rho).mul_(rho)

    @staticmethod
    def shifted(A, D2, rho):
        """A + D2 / rho."""
        return D2.div(rho).add_(A)

    @staticmethod
    def relax(new, old, omega):
        """omega new + (1 - omega) old, overwriting `new`."""
        return new.mul_(omega).add_(old, alpha=1.0 - omega)

    @staticmethod
    def sub_(A, C):
        return A.sub_(C)

    @staticmethod
    def add_scaled_(target, x, alpha):
        target.add_(x, alpha=alpha)

    @staticmethod
    def row_l1_max(M):
        """max_i sum_j |M_ij|, as a 0-d tensor on M's device; overwrites M."""
        return M.abs_().sum(dim=1).max()

    @staticmethod
    def flag(E):
        return E.any().to(E.dtype)

    @staticmethod
    def host(*scalars) -> list[float]:
        """The 0-d tensors as floats: one device-to-host transfer for all of them."""
        return torch.stack(scalars).tolist()


class XpOps:
    """The loop's primitives on the arrays of a NumPy-compatible module (CuPy, NumPy)."""

    def __init__(self, xp):
        self.xp = xp

    def zeros(self, shape, like):
        return self.xp.zeros(shape, dtype=like.dtype)

    def zero_diagonal(self, C):
        self.xp.fill_diagonal(C, 0.0)

    def soft_threshold(self, v, t):
        return v - self.xp.clip(v, -t, t)

    @staticmethod
    def penalty(C, D2, rho):
        return rho * C - D2

    @staticmethod
    def shifted(A, D2, rho):
        return A + D2 / rho

    @staticmethod
    def relax(new, old, omega):
        return omega * new + (1.0 - omega) * old

    @staticmethod
    def sub_(A, C):
        A -= C
        return A

    @staticmethod
    def add_scaled_(target, x, alpha):
        target += alpha * x

    def row_l1_max(self, M):
        return self.xp.abs(M).sum(axis=1).max()

    @staticmethod
    def flag(E):
        return E.any()

    def host(self, *scalars) -> list[float]:
        return self.xp.stack([self.xp.asarray(s, dtype=self.xp.float64) for s in scalars]).tolist()


@dataclass
class Iterate:
    """Where the loop stopped."""

    C: object  # N x N, zero diagonal
    n_iter: int
    residual: float  # max_i sum_j |A_ij - C_ij| at the last check (A over-relaxed in the fast mode)
    converged: bool


def iterate(ops, Y, step, mode: SolverMode, *, rho: float, eps: float, e_threshold: float,
            max_iter: int, affine: bool) -> Iterate:
    """Run the ADMM from C = E = 0 and zero multipliers until the mode's stopping rule holds
    or max_iter steps. `step(W, E, e_nonzero, v)` (the factored A-update) returns A and Y - Y A for
    R = lambda_z Y^T (Y - E) + W [+ 1 v^T]."""
    n = Y.shape[1]
    C = ops.zeros((n, n), Y)
    D2 = ops.zeros((n, n), Y)
    E = ops.zeros(Y.shape, Y)
    D1 = ops.zeros((n,), Y) if affine else None
    # The reference skips Y^T E while E = 0, which costs a device sync every step; the
    # checked-every-k modes always include it (a D x N x N product, or one subtraction).
    e_nonzero = mode.check_every != 1
    residual = math.inf
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        check = n_iter % mode.check_every == 0 or n_iter == max_iter
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
        if not check:
            continue
        if mode.check_every == 1:  # the reference: read the E flag with the residual, every step
            residual, e_flag = ops.host(ops.row_l1_max(diff), ops.flag(E))
            e_nonzero = e_flag > 0
        else:
            (residual,) = ops.host(ops.row_l1_max(diff))
        if residual < eps:
            return Iterate(C, n_iter, residual, True)
    return Iterate(C, n_iter, residual, False)
