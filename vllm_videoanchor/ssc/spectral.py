"""Deterministic spectral clustering of an SSC affinity.

scikit-learn's `SpectralClustering` (ARPACK shift-invert, random label assignment) takes
minutes at N = 16k and is not reproducible. SSC coefficients are sparse, so the affinity
W = |C| + |C|^T is built as a sparse matrix from the non-zeros of C (exactly, nothing is
dropped; on a GPU only the non-zeros leave the device), its top eigenvectors come from
`eigsh(which='LA')` on D^-1/2 W D^-1/2 with a seeded start vector, and k-means with a fixed
seed assigns the labels. The embedding follows scikit-learn's `spectral_embedding`
(eigenvectors scaled by D^-1/2, deterministic sign), so labels agree with it on clear cases.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import ArpackNoConvergence, eigsh
from sklearn.cluster import KMeans

# Below this many samples a dense eigendecomposition is cheaper than ARPACK.
DENSE_EIGH_MAX_SAMPLES = 512
KMEANS_N_INIT = 10


def sparse_affinity(C: torch.Tensor) -> sp.csr_matrix:
    """W = |C| + |C|^T as a scipy CSR matrix, built from the non-zeros of C on its device."""
    n = C.shape[0]
    abs_c = C.abs()
    W = abs_c + abs_c.T
    rows, cols = torch.nonzero(W, as_tuple=True)
    values = W[rows, cols].double()
    return sp.csr_matrix(
        (values.cpu().numpy(), (rows.cpu().numpy(), cols.cpu().numpy())), shape=(n, n)
    )


def spectral_embedding(affinity: sp.spmatrix, n_components: int, random_state: int) -> np.ndarray:
    """Top `n_components` eigenvectors of the normalised affinity, scaled by D^-1/2."""
    n = affinity.shape[0]
    degree = np.asarray(affinity.sum(axis=1)).ravel()
    isolated = degree <= 0
    inv_sqrt_degree = np.where(isolated, 0.0, 1.0 / np.sqrt(np.where(isolated, 1.0, degree)))
    scaling = sp.diags(inv_sqrt_degree)
    normalised = (scaling @ affinity @ scaling).tocsr()
    if n <= DENSE_EIGH_MAX_SAMPLES or n_components >= n - 1:
        _, vectors = np.linalg.eigh(normalised.toarray())
        vectors = vectors[:, -n_components:]
    else:
        v0 = np.random.default_rng(random_state).uniform(-1.0, 1.0, n)
        try:
            _, vectors = eigsh(normalised, k=n_components, which="LA", v0=v0)
        except ArpackNoConvergence:
            _, vectors = np.linalg.eigh(normalised.toarray())
            vectors = vectors[:, -n_components:]
    embedding = vectors * np.where(isolated, 1.0, inv_sqrt_degree)[:, None]
    # Deterministic sign: the largest-magnitude entry of every vector is positive.
    signs = np.sign(embedding[np.abs(embedding).argmax(axis=0), range(embedding.shape[1])])
    return embedding * np.where(signs == 0, 1.0, signs)


def spectral_clustering(C: torch.Tensor, n_clusters: int, random_state: int = 0):
    """Labels (numpy int64, N) and the sparse affinity used, for coefficient matrix C."""
    affinity = sparse_affinity(C)
    n = C.shape[0]
    if n_clusters == 1:
        return np.zeros(n, dtype=np.int64), affinity
    embedding = spectral_embedding(affinity, n_clusters, random_state)
    kmeans = KMeans(n_clusters=n_clusters, n_init=KMEANS_N_INIT, random_state=random_state)
    labels = kmeans.fit_predict(embedding).astype(np.int64)
    return labels, affinity
