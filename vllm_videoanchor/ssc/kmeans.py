"""k-means on the tokens themselves: the paper's ablation that clusters without subspaces.

Same input as the SSC solver (optionally PCA-projected rows), scikit-learn's KMeans with a
fixed seed, so every tensor-parallel rank gets the same labels.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

from .admm import pca_project
from .params import DEFAULTS, check_data_size
from .spectral import KMEANS_N_INIT


def kmeans_labels(
    X: torch.Tensor,
    n_clusters: int,
    random_state: int = DEFAULTS["random_state"],
    pca_rank: int = DEFAULTS["pca_rank"],
) -> torch.Tensor:
    """Labels (int64, on X's device) of the rows of X (n_samples, n_features)."""
    n_samples = X.shape[0]
    check_data_size(n_samples, X.shape[1], n_clusters=n_clusters)
    if n_clusters == 1:
        return torch.zeros(n_samples, dtype=torch.int64, device=X.device)
    points = pca_project(X.T.contiguous(), pca_rank).T
    model = KMeans(n_clusters=n_clusters, n_init=KMEANS_N_INIT, random_state=random_state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # duplicated tokens: fewer distinct points
        labels = model.fit_predict(points.double().cpu().numpy()).astype(np.int64)
    return torch.as_tensor(labels, device=X.device)
