"""SparseSubspaceClustering: the scikit-learn face of the ADMM solver and the spectral step."""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin

from .admm import SOLVERS, admm_ssc, pca_project
from .cupy_admm import admm_ssc_cupy
from .spectral import EIGEN_SOLVERS, spectral_clustering

DTYPES = {"float32": torch.float32, "float64": torch.float64}
BACKENDS = ("torch", "cupy")


def _check_positive(name: str, value, *, integer: bool = False, allow_zero: bool = False) -> None:
    kind = numbers.Integral if integer else numbers.Real
    ok = isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        what = "an integer" if integer else "a finite number"
        raise ValueError(f"{name} must be {what} {bound}, got {value!r}")


def as_token_matrix(X, name: str = "X", dtype: torch.dtype = torch.float32, device=None):
    """Validate a (n_samples, n_features) input and return it as a torch tensor."""
    if isinstance(X, torch.Tensor):
        tensor = X.detach()
    else:
        try:
            tensor = torch.as_tensor(np.asarray(X, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be a numeric array: {exc}") from None
    if tensor.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (n_samples, n_features), got {tensor.ndim}-D shape {tuple(tensor.shape)}"
        )
    if tensor.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 samples (tokens), got {tensor.shape[0]}")
    if tensor.shape[1] < 1:
        raise ValueError(f"{name} needs at least 1 feature, got {tensor.shape[1]}")
    if not (tensor.is_floating_point() or tensor.dtype in (torch.int32, torch.int64)):
        raise ValueError(f"{name} must be real-valued, got dtype {tensor.dtype}")
    tensor = tensor.to(device=device if device is not None else tensor.device, dtype=dtype)
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return tensor


class SparseSubspaceClustering(ClusterMixin, BaseEstimator):
    """Sparse Subspace Clustering (Elhamifar & Vidal) as used by VideoAnchor.

    Solves min ||C||_1 + lambda_e ||E||_1 + lambda_z/2 ||Y - YC - E||_F^2 with
    diag(C) = 0 (and 1^T C = 1^T when `affine`) by ADMM, then clusters the affinity
    |C| + |C|^T spectrally. Defaults are the reference code's.

    Parameters
    ----------
    n_clusters : number of clusters of the spectral step.
    rho, alpha_e, alpha_z, eps, max_iter, affine : the ADMM knobs (DESIGN.md section 1);
        lambda_e = alpha_e / mu_e and lambda_z = alpha_z / mu_z are scaled by the data.
    pca_rank : project the tokens to this many principal components first (0: none).
    random_state : seed of the spectral step (eigensolver start and k-means).
    device : where to solve (None: the input's device).
    dtype : "float32" or "float64" arithmetic.
    solver : "auto", "dense" (explicit inverse) or "lowrank" (Woodbury; needs rank < N).
    backend : "torch", or "cupy" (CUDA only, needs CuPy installed).
    eigen_solver : "arpack" (scipy on the sparse affinity, CPU) or "lobpcg" (torch, on the
        solver's device).

    Attributes
    ----------
    coef_ : (n_samples, n_samples), X ~ coef_ @ X, zero diagonal (the transpose of C).
    labels_, affinity_matrix_ (scipy sparse), n_iter_, converged_, lambda_e_, lambda_z_.
    Arrays are torch tensors on the solver's device when X was a tensor, numpy otherwise.
    """

    def __init__(
        self,
        n_clusters=24,
        *,
        rho=300.0,
        alpha_e=800.0,
        alpha_z=800.0,
        eps=1e-4,
        max_iter=10000,
        affine=True,
        pca_rank=0,
        random_state=0,
        device=None,
        dtype="float32",
        solver="auto",
        backend="torch",
        eigen_solver="arpack",
    ):
        self.n_clusters = n_clusters
        self.rho = rho
        self.alpha_e = alpha_e
        self.alpha_z = alpha_z
        self.eps = eps
        self.max_iter = max_iter
        self.affine = affine
        self.pca_rank = pca_rank
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.solver = solver
        self.backend = backend
        self.eigen_solver = eigen_solver

    def _check_params(self, n_samples: int, n_features: int) -> None:
        _check_positive("n_clusters", self.n_clusters, integer=True)
        for name in ("rho", "alpha_e", "alpha_z", "eps"):
            _check_positive(name, getattr(self, name))
        _check_positive("max_iter", self.max_iter, integer=True)
        _check_positive("pca_rank", self.pca_rank, integer=True, allow_zero=True)
        _check_positive("random_state", self.random_state, integer=True, allow_zero=True)
        if self.n_clusters > n_samples:
            raise ValueError(f"n_clusters={self.n_clusters} must be <= n_samples={n_samples}")
        if self.pca_rank > min(n_samples, n_features):
            raise ValueError(
                f"pca_rank={self.pca_rank} must be <= min(n_samples, n_features)="
                f"{min(n_samples, n_features)}"
            )
        if not isinstance(self.affine, bool):
            raise ValueError(f"affine must be a bool, got {self.affine!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {self.dtype!r}")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
        if self.eigen_solver not in EIGEN_SOLVERS:
            raise ValueError(
                f"eigen_solver must be one of {EIGEN_SOLVERS}, got {self.eigen_solver!r}"
            )
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")

    def fit(self, X, y=None):
        """Solve for the self-expression coefficients of the rows of X and cluster them."""
        return_torch = isinstance(X, torch.Tensor)
        X = as_token_matrix(X, dtype=DTYPES.get(self.dtype, torch.float32), device=self.device)
        self._check_params(*X.shape)
        Y = pca_project(X.T.contiguous(), self.pca_rank)
        knobs = dict(
            rho=float(self.rho),
            alpha_e=float(self.alpha_e),
            alpha_z=float(self.alpha_z),
            eps=float(self.eps),
            max_iter=int(self.max_iter),
            affine=self.affine,
            solver=self.solver,
        )
        if self.backend == "cupy":
            result = admm_ssc_cupy(Y.contiguous(), **knobs)
        else:
            result = admm_ssc(Y, **knobs)
        labels, affinity = spectral_clustering(
            result.C, self.n_clusters, self.random_state, self.eigen_solver
        )

        coef = result.C.T
        self.n_iter_ = result.n_iter
        self.converged_ = result.converged
        self.lambda_e_ = result.lambda_e
        self.lambda_z_ = result.lambda_z
        self.residual_ = result.residual
        self.affinity_matrix_ = affinity
        if return_torch:
            self.coef_ = coef
            self.labels_ = torch.as_tensor(labels, device=coef.device)
        else:
            self.coef_ = coef.cpu().numpy()
            self.labels_ = labels
        return self
