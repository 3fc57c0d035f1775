"""The A-update of the ADMM, factored once per solve, for torch and NumPy / CuPy arrays alike.

Every step solves (w G + rho I [+ rho 1 1^T]) A = R for the N x N unknown A, where the
weight w is lambda_z (the reference's iteration) or the fast mode's residual penalty
(iteration.coupling_weight); below, lambda_z stands for w. The
reference solves that system from scratch at every step. Its left-hand matrix never
changes, so here it is factored once: an explicit inverse when Y has full column rank
(`DenseSystem`, D >= N), and Woodbury with the affine term folded in as one more row of Y
when Y has fewer rows than columns (`LowRankSystem`, D < N, or after PCA), which makes
every step O(N^2 D) instead of O(N^3). Both are written once against array_ops.py's
primitives (`ops`): the torch solver and the CuPy one run the very same code.
"""

from __future__ import annotations

import math

from .params import lowrank_fits


class DenseSystem:
    """A = M R with M = (lambda_z G + rho I [+ rho 1 1^T])^-1 stored explicitly.

    The inverse is formed once, in float64 for accuracy; a step is then one N x N x N
    product plus the D x N x N products Y^T E (skipped while E = 0) and Y A.
    """

    def __init__(self, ops, Y, gram, lambda_z, rho, affine):
        lhs = ops.add_diagonal_(lambda_z * ops.float64(gram), rho)
        if affine:
            lhs += rho
        inv = ops.spd_inverse(lhs)
        m1 = ops.row_sums(inv)  # M 1
        # M (lz G) = M (lhs - rho I - rho 1 1^T) = I - rho M - rho (M 1) 1^T: no N^3 product
        P0 = ops.add_diagonal_(inv * -rho, 1.0)
        if affine:
            P0 -= rho * m1[:, None]
        self.ops = ops
        self.M = ops.cast(inv, Y)
        self.P0 = ops.cast(P0, Y)
        self.m1 = ops.cast(m1, Y) if affine else None
        self.Y = Y
        self.lambda_z = lambda_z

    def step(self, W, E, e_nonzero, v):
        """A and the residual Y - Y A, for R = lambda_z Y^T (Y - E) + W [+ 1 v^T]."""
        ops = self.ops
        T = ops.addmm(W, self.Y.T, E, alpha=-self.lambda_z) if e_nonzero else W
        A = ops.addmm(self.P0, self.M, T)
        if v is not None:
            A = ops.add_outer_(A, self.m1, v)
        return A, ops.addmm(self.Y, self.Y, A, alpha=-1.0)


class LowRankSystem:
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

    def __init__(self, ops, Y, lambda_z, rho, affine):
        r, n = Y.shape
        self.ops, self.r, self.rho = ops, r, rho
        self.v_scale = 1.0 / math.sqrt(rho * lambda_z)  # 1 / (lz a)
        Yt = ops.float64(Y)
        if affine:
            Yt = ops.stack_rows(Yt, ops.ones_row(n, Yt, math.sqrt(rho / lambda_z)))
        gram_small = Yt @ Yt.T
        K = ops.spd_inverse(ops.add_diagonal_(ops.copy(gram_small), rho / lambda_z))
        self.Y = Y
        self.Yt = ops.cast(Yt, Y)
        self.K = ops.cast(K, Y)
        self.gram_rows = ops.cast(gram_small[:r], Y)  # the rows of Yt Yt^T that give Y (.)

    def step(self, W, E, e_nonzero, v):
        ops, rho = self.ops, self.rho
        YW = self.Yt @ W
        F = self.Y - E if e_nonzero else self.Y
        if v is not None:
            F = ops.stack_rows(F, (v * self.v_scale)[None, :])
        H = self.K @ ops.penalty(F, YW, rho)  # K (rho Ft - Yt W)
        A = ops.div_(ops.addmm(W, self.Yt.T, H), rho)
        YA = ops.div_(ops.addmm(YW[: self.r], self.gram_rows, H), rho)
        return A, self.Y - YA


def lowrank_is_cheaper(d: int, n: int) -> bool:
    """Flops per step: Woodbury 4 r N (N + r) with r = d + 1, dense 2 N^3 + 4 d N^2.

    Woodbury wins when d < N / sqrt(2) or so; close to N the r x r x N products dominate.
    """
    r = d + 1
    return lowrank_fits(d, n) and 4 * r * n * (n + r) < 2 * n**3 + 4 * d * n**2


def factor(ops, Y, gram, lambda_z: float, rho: float, affine: bool, solver: str):
    """The factored A-update of `solver` ("dense" or "lowrank", resolved): step(W, E, e_nonzero, v).
    `lambda_z`: the weight of G = Y^T Y in the system (iteration.coupling_weight)."""
    if solver == "dense":
        return DenseSystem(ops, Y, gram, lambda_z, rho, affine).step
    return LowRankSystem(ops, Y, lambda_z, rho, affine).step
