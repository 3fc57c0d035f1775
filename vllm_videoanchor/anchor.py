"""From a request's visual tokens to per-token attention gains (DESIGN.md section 1).

`AnchorParams` is every knob of the method, validated with messages that name the field;
`compute_anchor_gains` runs Sparse Subspace Clustering on the tokens, turns each token's
cluster size and self-expression strength into a score s in [0, 1], and returns the key
and value gains g_K = 1 + alpha_k s and g_V = 1 + alpha_v s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from .ssc import SparseSubspaceClustering

SCORE_EPS = 1e-5  # the reference's guard in (s_hat - min) / (max - min + 1e-5)
# AnchorParams fields that are SparseSubspaceClustering parameters of the same name
ESTIMATOR_FIELDS = {
    "n_clusters", "rho", "alpha_e", "alpha_z", "eps", "max_iter", "affine", "pca_rank",
    "random_state", "dtype", "solver",
}


class AnchorParams(BaseModel):
    """The knobs of VideoAnchor. Defaults: the paper's InternVL2-8B gains, the reference SSC.

    alpha_q is accepted for compatibility with the paper and has no effect: a per-query
    term is constant along each softmax row and cancels.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    method: Literal["ssc"] = "ssc"
    alpha_q: float = Field(4.0, ge=0, allow_inf_nan=False, description="no effect (cancels)")
    alpha_k: float = Field(9.5, ge=0, allow_inf_nan=False, description="key gain: 1 + alpha_k s")
    alpha_v: float = Field(2.5, ge=0, allow_inf_nan=False, description="value gain: 1 + alpha_v s")
    n_clusters: int = Field(24, ge=1, description="clusters of the spectral step")
    rho: float = Field(300.0, gt=0, allow_inf_nan=False)
    alpha_e: float = Field(800.0, gt=0, allow_inf_nan=False)
    alpha_z: float = Field(800.0, gt=0, allow_inf_nan=False)
    eps: float = Field(1e-4, gt=0, allow_inf_nan=False, description="ADMM stopping tolerance")
    max_iter: int = Field(10000, ge=1)
    affine: bool = True
    pca_rank: int = Field(0, ge=0, description="PCA to this many dimensions first (0: none)")
    random_state: int = Field(0, ge=0, description="seed of the spectral step")
    solver: Literal["auto", "dense", "lowrank"] = "auto"
    dtype: Literal["float32", "float64"] = "float32"

    def estimator(self, device=None, backend: str = "torch") -> SparseSubspaceClustering:
        """The clustering estimator these parameters describe."""
        knobs = self.model_dump(include=ESTIMATOR_FIELDS)
        return SparseSubspaceClustering(**knobs, device=device, backend=backend)


@dataclass
class AnchorGains:
    """Per-token results for one token set (all tensors of shape (N,), on the tokens' device)."""

    score: torch.Tensor
    gain_k: torch.Tensor
    gain_v: torch.Tensor
    labels: torch.Tensor
    n_iter: int
    converged: bool
    lambda_e: float
    lambda_z: float
    residual: float
    seconds: float  # solver plus clustering, wall clock


def shared_expression_score(coef: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """s = minmax(pi * r): pi_i = |cluster(i)| / N, r_i = sum_j C_ij (signed row sum of C).

    `coef` is the estimator's coef_ = C^T, so r is its column sum.
    """
    n = coef.shape[0]
    cluster_sizes = torch.bincount(labels, minlength=int(labels.max()) + 1)
    share = cluster_sizes[labels].to(coef.dtype) / n
    strength = coef.sum(dim=0)
    raw = share * strength
    low, high = raw.min(), raw.max()
    return (raw - low) / (high - low + SCORE_EPS)


def compute_anchor_gains(
    tokens: torch.Tensor, params: AnchorParams | None = None, *, backend: str = "torch"
) -> AnchorGains:
    """Scores and gains for the visual tokens (N, D) of one request, on the tokens' device."""
    params = AnchorParams() if params is None else params
    if not isinstance(params, AnchorParams):
        raise TypeError(f"params must be an AnchorParams, got {type(params).__name__}")
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"tokens must be a torch.Tensor, got {type(tokens).__name__}")
    start = time.perf_counter()
    est = params.estimator(backend=backend).fit(tokens)
    score = shared_expression_score(est.coef_, est.labels_)
    if score.is_cuda:
        torch.cuda.synchronize(score.device)
    seconds = time.perf_counter() - start
    return AnchorGains(
        score=score,
        gain_k=1.0 + params.alpha_k * score,
        gain_v=1.0 + params.alpha_v * score,
        labels=est.labels_,
        n_iter=est.n_iter_,
        converged=est.converged_,
        lambda_e=est.lambda_e_,
        lambda_z=est.lambda_z_,
        residual=est.residual_,
        seconds=seconds,
    )
