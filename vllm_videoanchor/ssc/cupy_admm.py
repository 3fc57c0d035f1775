"""The optional CuPy backend of the ADMM solver: same contract as `admm.py`, same loop.

The factored A-update is written against the NumPy API with the array module passed in
(`xp`), and the iteration is iteration.py's, shared with the torch solver; so the very
same code runs with CuPy on a GPU and with NumPy in the CPU tests. Torch tensors cross
over without copies through DLPack.
"""

from __future__ import annotations

import math

import torch

from .admm import AdmmResult, regularizers, resolve_mode, resolve_solver, run_admm
from .iteration import XpOps
from .memory import check_fits
from .params import DEFAULTS, KNOB


def cupy_available() -> bool:
    """True when CuPy imports and sees a CUDA device."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # ImportError, or CUDA runtime errors without a driver
        return False


def check_solver_backend(backend: str) -> None:
    """ValueError unless `backend` is a known solver backend that can run here (so that a
    server asked for CuPy without it fails at start-up, not on its first anchored request)."""
    KNOB["backend"].check(backend)
    if backend == "cupy" and not cupy_available():
        raise ValueError("solver backend 'cupy' needs CuPy and a CUDA device: pip install 'vllm-videoanchor[gpu]' "
                         "on a GPU machine, or use 'torch'")


def _factor(xp, Y, gram, lambda_z, rho, affine, solver):
    """Precomputations of the A-update, in float64; returns step(W, E, e_nonzero, v) -> A, Y - Y A."""
    dtype = Y.dtype
    d, n = Y.shape
    Yd = Y.astype(xp.float64)
    if solver == "dense":
        lhs = lambda_z * gram.astype(xp.float64) + rho * xp.eye(n) + (rho if affine else 0.0)
        inv = xp.linalg.inv(lhs)
        inv = (inv + inv.T) / 2
        M = inv.astype(dtype)
        P0 = (lambda_z * (inv @ gram.astype(xp.float64))).astype(dtype)
        m1 = inv.sum(axis=1).astype(dtype)

        def step(W, E, e_nonzero, v):
            T = W - lambda_z * (Y.T @ E) if e_nonzero else W
            A = P0 + M @ T
            if v is not None:
                A += xp.outer(m1, v)
            return A, Y - Y @ A

        return step

    # Woodbury with the affine term folded in as a row of Y (see admm._LowRankSystem).
    Yt = Yd
    if affine:
        Yt = xp.concatenate([Yd, math.sqrt(rho / lambda_z) * xp.ones((1, n))])
    gram_small = Yt @ Yt.T
    K = xp.linalg.inv(gram_small + (rho / lambda_z) * xp.eye(Yt.shape[0])).astype(dtype)
    gram_rows = gram_small[:d].astype(dtype)
    Yt = Yt.astype(dtype)
    v_scale = 1.0 / math.sqrt(rho * lambda_z)

    def step(W, E, e_nonzero, v):
        YW = Yt @ W
        F = Y - E if e_nonzero else Y
        if v is not None:
            F = xp.concatenate([F, (v * v_scale)[None, :]])
        H = K @ (rho * F - YW)
        A = (W + Yt.T @ H) / rho
        YA = (YW[:d] + gram_rows @ H) / rho
        return A, Y - YA

    return step


def admm_ssc_xp(
    Y,
    *,
    xp=None,
    rho=DEFAULTS["rho"],
    alpha_e=DEFAULTS["alpha_e"],
    alpha_z=DEFAULTS["alpha_z"],
    eps=DEFAULTS["eps"],
    tol=DEFAULTS["tol"],
    max_iter=DEFAULTS["max_iter"],
    affine=DEFAULTS["affine"],
    solver=DEFAULTS["solver"],
    solver_mode=DEFAULTS["solver_mode"],
) -> AdmmResult:
    """ADMM on an xp array Y (D x N); `xp` defaults to CuPy. Returns C as an xp array."""
    if xp is None:
        import cupy as xp
    d, n = Y.shape
    solver = resolve_solver(solver, d, n)
    rho, eps, tol = resolve_mode(solver_mode, rho, eps, tol)
    check_fits(n, Y.dtype.itemsize, "cupy" if xp.__name__ == "cupy" else "cpu")
    gram = Y.T @ Y
    mu_e = float(xp.sort(xp.abs(Y).sum(axis=0))[-2])
    abs_gram = xp.abs(gram) * (1 - xp.eye(n, dtype=Y.dtype))
    mu_z = float(abs_gram.max(axis=1).min())
    del abs_gram
    lambda_e, lambda_z = regularizers(alpha_e, alpha_z, mu_e, mu_z, dtype=Y.dtype)
    step = _factor(xp, Y, gram, lambda_z, rho, affine, solver)
    del gram
    return run_admm(XpOps(xp), Y, step, solver_mode, rho=rho, eps=eps, tol=tol, lambda_e=lambda_e,
                    lambda_z=lambda_z, max_iter=max_iter, affine=affine)


def admm_ssc_cupy(Y: torch.Tensor, **kwargs) -> AdmmResult:
    """Run the CuPy solver on a CUDA torch tensor; C comes back as a torch tensor (no copy)."""
    if Y.device.type != "cuda":
        raise ValueError("backend='cupy' needs the tokens on a CUDA device")
    try:
        import cupy
    except ImportError as exc:
        raise ValueError(
            "backend='cupy' needs CuPy: pip install 'vllm-videoanchor[gpu]'"
        ) from exc
    with cupy.cuda.Device(Y.device.index or 0):
        result = admm_ssc_xp(cupy.from_dlpack(Y.contiguous()), xp=cupy, **kwargs)
        result.C = torch.from_dlpack(result.C)
    return result
