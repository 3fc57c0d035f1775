"""Sparse Subspace Clustering: pure maths, no vLLM import anywhere in this package."""

from .admm import AdmmResult, AdmmStats, admm_ssc, pca_project
from .cupy_admm import cupy_available
from .estimator import SparseSubspaceClustering, as_token_matrix
from .kmeans import kmeans_labels
from .spectral import spectral_clustering

__all__ = [
    "AdmmResult",
    "AdmmStats",
    "SparseSubspaceClustering",
    "admm_ssc",
    "as_token_matrix",
    "cupy_available",
    "kmeans_labels",
    "pca_project",
    "spectral_clustering",
]
