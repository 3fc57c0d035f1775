"""How much memory a solve needs, checked before anything N x N is allocated.

C is N x N, and so are the factored system, the dual variable and the step's temporaries:
at N = 16k one float32 N x N matrix is 1 GiB. Counted from the solvers (admm.py,
cupy_admm.py, and the loop in iteration.py, the same for both modes): at their peak, while
the system is factored (the Gram matrix, and the left-hand side, its inverse and the affine
correction in float64) and during the loop (M, P0, C, D2, W = rho C - D2, A, a
soft-threshold temporary, and C at the last window's end for the distance estimate; the
fast mode relaxes A in place), about LIVE_NXN matrices of the solve's dtype are alive,
and LIVE_DXN of D x N (Y; the fast mode's split residual R and its multiplier U, the step's
Y - Y A and the residual's proximal point; the reference's E and its temporaries are
fewer): with more features than tokens these count too (at D = 2N, each is two N x N).
A size that cannot fit is refused with a clear error, instead of an out-of-memory failure
half-way through (on a GPU, possibly in another request's step).
"""

from __future__ import annotations

import os

LIVE_NXN = 9
LIVE_DXN = 5


def solve_bytes(n_samples: int, itemsize: int, n_features: int = 0) -> int:
    """Peak bytes of the N x N and D x N matrices of one solve (D = n_features)."""
    return (LIVE_NXN * n_samples + LIVE_DXN * n_features) * n_samples * itemsize


def available_bytes(device) -> int | None:
    """Free memory where the solve runs: the CUDA device's free memory, or the host's
    available memory (None where it cannot be read)."""
    device_type = getattr(device, "type", str(device))
    if device_type == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device_type == "cupy":
        import cupy

        free, _ = cupy.cuda.runtime.memGetInfo()
        return int(free)
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(n_samples: int, itemsize: int, device, available: int | None = None, n_features: int = 0) -> None:
    """ValueError when a solve over n_samples tokens of n_features dimensions cannot fit in
    the free memory."""
    needed = solve_bytes(n_samples, itemsize, n_features)
    available = available_bytes(device) if available is None else available
    if available is not None and needed > available:
        raise ValueError(
            f"a solve over {n_samples} tokens needs about {needed / 2**30:.1f} GiB ({LIVE_NXN} matrices of "
            f"{n_samples} x {n_samples} and {LIVE_DXN} of {n_features} x {n_samples}, {itemsize} bytes each), "
            f"more than the {available / 2**30:.1f} GiB free on "
            f"{getattr(device, 'type', device)}: use fewer frames or pixels per anchored item"
        )
