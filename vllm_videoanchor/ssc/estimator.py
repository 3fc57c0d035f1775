"""SparseSubspaceClustering: the scikit-learn face of the ADMM solver and the spectral step."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin

from .admm import admm_ssc, forward_stats, pca_project
from .cupy_admm import admm_ssc_cupy
from .params import ADMM_KNOBS, DEFAULTS, DTYPES, KNOB, KNOBS, check_data_size, describe_knobs
from .spectral import spectral_clustering


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
    check_data_size(*tensor.shape, name=name)  # enough samples (no knobs yet)
    if tensor.shape[1] < 1:
        raise ValueError(f"{name} needs at least 1 feature, got {tensor.shape[1]}")
    if not (tensor.is_floating_point() or tensor.dtype in (torch.int32, torch.int64)):
        raise ValueError(f"{name} must be real-valued, got dtype {tensor.dtype}")
    tensor = tensor.to(device=device if device is not None else tensor.device, dtype=dtype)
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return tensor


@forward_stats("stats_", suffix="_")
class SparseSubspaceClustering(ClusterMixin, BaseEstimator):
    """Sparse Subspace Clustering (Elhamifar & Vidal) as used by VideoAnchor.

    Solves min ||C||_1 + lambda_e ||E||_1 + lambda_z/2 ||Y - YC - E||_F^2 with
    diag(C) = 0 (and 1^T C = 1^T when `affine`) by ADMM, then clusters the affinity
    |C| + |C|^T spectrally. Defaults are the reference code's (declared in ssc/params.py).

    Parameters
    ----------
{knobs}
    device : where to solve (None: the input's device).
    time_budget : seconds the ADMM may run; past them it stops with the iterate it reached
        (stats_.stopped_by "budget", converged_ False) and the spectral step runs on that
        iterate. None: no bound (servers set one: settings.solve_budget_seconds).

    Attributes
    ----------
    coef_ : (n_samples, n_samples), X ~ coef_ @ X, zero diagonal (the transpose of C).
    labels_, affinity_matrix_ (W = |C| + |C|^T, dense), stats_ (AdmmStats), and stats_'s fields as
    n_iter_, converged_, lambda_e_, lambda_z_, residual_, solver_mode_, distance_ (the
    estimated relative distance ||C - C*||_F / ||C||_F to the optimum where the ADMM stopped),
    stopped_by_ (what ended it: "distance", "residual", "max_iter" or "budget").
    Arrays are torch tensors on the solver's device when X was a tensor, numpy otherwise.
    """

    def __init__(
        self,
        n_clusters=DEFAULTS["n_clusters"],
        *,
        rho=DEFAULTS["rho"],
        alpha_e=DEFAULTS["alpha_e"],
        alpha_z=DEFAULTS["alpha_z"],
        eps=DEFAULTS["eps"],
        tol=DEFAULTS["tol"],
        max_iter=DEFAULTS["max_iter"],
        affine=DEFAULTS["affine"],
        pca_rank=DEFAULTS["pca_rank"],
        random_state=DEFAULTS["random_state"],
        device=None,
        dtype=DEFAULTS["dtype"],
        solver=DEFAULTS["solver"],
        solver_mode=DEFAULTS["solver_mode"],
        backend=DEFAULTS["backend"],
        eigen_solver=DEFAULTS["eigen_solver"],
        assign_labels=DEFAULTS["assign_labels"],
        time_budget=None,
    ):
        # scikit-learn convention: store untouched, validate in fit
        self.n_clusters = n_clusters
        self.rho = rho
        self.alpha_e = alpha_e
        self.alpha_z = alpha_z
        self.eps = eps
        self.tol = tol
        self.max_iter = max_iter
        self.affine = affine
        self.pca_rank = pca_rank
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.solver = solver
        self.solver_mode = solver_mode
        self.backend = backend
        self.eigen_solver = eigen_solver
        self.assign_labels = assign_labels
        self.time_budget = time_budget

    def _check_params(self, n_samples: int, n_features: int) -> None:
        for knob in KNOBS:
            knob.check(getattr(self, knob.name))
        check_data_size(n_samples, n_features, n_clusters=self.n_clusters, pca_rank=self.pca_rank)

    def fit(self, X, y=None):
        """Solve for the self-expression coefficients of the rows of X and cluster them."""
        return_torch = isinstance(X, torch.Tensor)
        X = as_token_matrix(X, dtype=DTYPES.get(self.dtype, torch.float32), device=self.device)
        self._check_params(*X.shape)
        Y = pca_project(X.T.contiguous(), self.pca_rank)
        knobs = {name: None if getattr(self, name) is None else KNOB[name].kind(getattr(self, name))
                 for name in ADMM_KNOBS}
        if self.backend == "cupy":
            result = admm_ssc_cupy(Y.contiguous(), **knobs, time_budget=self.time_budget)
        else:
            result = admm_ssc(Y, **knobs, time_budget=self.time_budget)
        labels, affinity = spectral_clustering(
            result.C, self.n_clusters, self.random_state, self.eigen_solver, self.assign_labels
        )

        coef = result.C.T
        self.stats_ = result.stats
        if return_torch:
            self.coef_, self.labels_, self.affinity_matrix_ = coef, labels, affinity
        else:
            self.coef_, self.labels_, self.affinity_matrix_ = (
                tensor.cpu().numpy() for tensor in (coef, labels, affinity))
        return self


if SparseSubspaceClustering.__doc__:  # None under python -OO
    SparseSubspaceClustering.__doc__ = SparseSubspaceClustering.__doc__.replace("{knobs}", describe_knobs())
