"""The optional CuPy backend of the ADMM solver: admm.py's `solve` on CuPy arrays.

Every step of the solve (regularisers, factorisation, iteration) is admm.py's, written once
against array_ops.py's primitives; `XpOps` runs it with CuPy on a GPU and with NumPy in the
CPU tests. Torch tensors cross over without copies through DLPack.
"""

from __future__ import annotations

import torch

from .admm import AdmmResult, solve
from .array_ops import XpOps
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
    time_budget=None,
) -> AdmmResult:
    """ADMM on an xp array Y (D x N); `xp` defaults to CuPy. Returns C as an xp array."""
    if xp is None:
        import cupy as xp
    return solve(XpOps(xp), Y, rho=rho, alpha_e=alpha_e, alpha_z=alpha_z, eps=eps, tol=tol, max_iter=max_iter,
                 affine=affine, solver=solver, solver_mode=solver_mode, time_budget=time_budget)


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
