"""The array primitives of the ADMM solver, for torch tensors and for NumPy / CuPy arrays.

The solver's steps (linear_system.py: the factored A-update; iteration.py: the loop) are
written once against these few primitives, so the torch solver and the CuPy one (NumPy in
the CPU tests) cannot drift apart. The torch versions work in place where the solver
allows it (memory at large N) and use fused products (addmm) where the solver is hot.
"""

from __future__ import annotations

import torch


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
    def huber_prox(P, bound, share):
        """P - share * clamp(P, -bound, bound), overwriting P: the proximal map of a Huber
        loss (iteration.SplitResidual)."""
        return P.sub_(P.clamp(-bound, bound), alpha=share)

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
    def copy(C):
        return C.clone()

    @staticmethod
    def norm(M):
        """||M||_F as a 0-d tensor on M's device."""
        return torch.linalg.vector_norm(M)

    @staticmethod
    def change_and_keep(previous, C):
        """||C - previous||_F (0-d), then previous <- C, both in previous' storage (no N x N temporary)."""
        change = torch.linalg.vector_norm(previous.sub_(C))
        previous.copy_(C)
        return change

    @staticmethod
    def host(*scalars) -> list[float]:
        """The 0-d tensors as floats: one device-to-host transfer for all of them."""
        return torch.stack(scalars).tolist()

    # -- what the factorisation and the A-update need --------------------------------------

    @staticmethod
    def device(Y):
        """Where Y lives, for the memory check (memory.check_fits)."""
        return Y.device

    @staticmethod
    def float64(M):
        return M.double()

    @staticmethod
    def cast(M, like):
        """M in like's dtype."""
        return M.to(like.dtype)

    @staticmethod
    def ones_row(n, like, value):
        """A 1 x n row of `value`, in like's dtype and device."""
        return like.new_full((1, n), value)

    @staticmethod
    def stack_rows(top, bottom):
        return torch.cat([top, bottom])

    @staticmethod
    def add_diagonal_(M, value):
        M.diagonal().add_(value)
        return M

    @staticmethod
    def spd_inverse(M):
        """M^-1 for a symmetric positive definite M, by Cholesky (symmetric by construction)."""
        return torch.cholesky_inverse(torch.linalg.cholesky(M))

    @staticmethod
    def addmm(bias, a, b, alpha=1.0):
        """bias + alpha a b, in one fused product."""
        return torch.addmm(bias, a, b, alpha=alpha)

    @staticmethod
    def add_outer_(M, u, v):
        """M += u v^T."""
        return M.addr_(u, v)

    @staticmethod
    def div_(M, x):
        return M.div_(x)

    @staticmethod
    def row_sums(M):
        return M.sum(dim=1)

    @staticmethod
    def second_largest(x):
        return float(torch.topk(x, 2).values[1])

    @staticmethod
    def abs_col_sums(Y):
        return Y.abs().sum(dim=0)

    @staticmethod
    def off_diagonal_row_max_min(G):
        """min_i max_{j != i} |G_ij|."""
        abs_g = G.abs()
        abs_g.fill_diagonal_(0.0)  # |.| >= 0, so a zero never wins a max over other entries
        return float(abs_g.max(dim=1).values.min())


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

    def huber_prox(self, P, bound, share):
        return P - share * self.xp.clip(P, -bound, bound)

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

    @staticmethod
    def copy(C):
        return C.copy()

    def norm(self, M):
        return self.xp.linalg.norm(M)

    def change_and_keep(self, previous, C):
        previous -= C
        change = self.xp.linalg.norm(previous)
        previous[...] = C
        return change

    def host(self, *scalars) -> list[float]:
        return self.xp.stack([self.xp.asarray(s, dtype=self.xp.float64) for s in scalars]).tolist()

    # -- what the factorisation and the A-update need --------------------------------------

    def device(self, Y):
        return "cupy" if self.xp.__name__ == "cupy" else "cpu"

    def float64(self, M):
        return M.astype(self.xp.float64)

    @staticmethod
    def cast(M, like):
        return M.astype(like.dtype)

    def ones_row(self, n, like, value):
        return self.xp.full((1, n), value, dtype=like.dtype)

    def stack_rows(self, top, bottom):
        return self.xp.concatenate([top, bottom])

    def add_diagonal_(self, M, value):
        index = self.xp.arange(M.shape[0])
        M[index, index] += value
        return M

    def spd_inverse(self, M):
        inverse = self.xp.linalg.inv(M)
        return (inverse + inverse.T) / 2

    @staticmethod
    def addmm(bias, a, b, alpha=1.0):
        return bias + alpha * (a @ b)

    def add_outer_(self, M, u, v):
        M += self.xp.outer(u, v)
        return M

    @staticmethod
    def div_(M, x):
        M /= x
        return M

    @staticmethod
    def row_sums(M):
        return M.sum(axis=1)

    def second_largest(self, x):
        return float(self.xp.sort(x)[-2])

    def abs_col_sums(self, Y):
        return self.xp.abs(Y).sum(axis=0)

    def off_diagonal_row_max_min(self, G):
        abs_g = self.xp.abs(G)
        self.xp.fill_diagonal(abs_g, 0.0)
        return float(abs_g.max(axis=1).min())
