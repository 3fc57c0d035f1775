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

import warnings

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import ArpackNoConvergence, eigsh
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

from .params import DEFAULTS, KNOB

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


def _normalise(affinity: sp.spmatrix):
    degree = np.asarray(affinity.sum(axis=1)).ravel()
    isolated = degree <= 0
    inv_sqrt_degree = np.where(isolated, 0.0, 1.0 / np.sqrt(np.where(isolated, 1.0, degree)))
    scaling = sp.diags(inv_sqrt_degree)
    return (scaling @ affinity @ scaling).tocsr(), inv_sqrt_degree, isolated


def _top_eigenvectors_arpack(normalised: sp.csr_matrix, k: int, random_state: int) -> np.ndarray:
    n = normalised.shape[0]
    if n <= DENSE_EIGH_MAX_SAMPLES or k >= n - 1:
        return np.linalg.eigh(normalised.toarray())[1][:, -k:]
    v0 = np.random.default_rng(random_state).uniform(-1.0, 1.0, n)
    try:
        return eigsh(normalised, k=k, which="LA", v0=v0)[1]
    except ArpackNoConvergence:
        return np.linalg.eigh(normalised.toarray())[1][:, -k:]


def _top_eigenvectors_lobpcg(
    normalised: sp.csr_matrix, k: int, random_state: int, device: torch.device
) -> np.ndarray:
    """LOBPCG on the device (e.g. the GPU that holds C): no dense eigendecomposition."""
    n = normalised.shape[0]
    if 3 * k >= n:
        return _top_eigenvectors_arpack(normalised, k, random_state)
    coo = normalised.tocoo()
    indices = torch.tensor(np.vstack([coo.row, coo.col]), dtype=torch.int64)
    values = torch.tensor(coo.data)
    shifted = torch.sparse_coo_tensor(indices, values, (n, n), check_invariants=True).to(device)
    shifted = (shifted + torch.eye(n, dtype=torch.float64, device=device).to_sparse()).coalesce()
    start = torch.rand(n, k, generator=torch.Generator().manual_seed(random_state), dtype=torch.float64)
    _, vectors = torch.lobpcg(shifted, k=k, X=start.to(device), largest=True, tol=1e-8, niter=2000)
    return vectors.cpu().numpy()


def spectral_embedding(
    affinity: sp.spmatrix,
    n_components: int,
    random_state: int,
    eigen_solver: str = DEFAULTS["eigen_solver"],
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Top `n_components` eigenvectors of the normalised affinity, scaled by D^-1/2."""
    normalised, inv_sqrt_degree, isolated = _normalise(affinity)
    if eigen_solver == "lobpcg":
        vectors = _top_eigenvectors_lobpcg(normalised, n_components, random_state, device)
    else:
        vectors = _top_eigenvectors_arpack(normalised, n_components, random_state)
    embedding = vectors * np.where(isolated, 1.0, inv_sqrt_degree)[:, None]
    # Deterministic sign: the largest-magnitude entry of every vector is positive.
    signs = np.sign(embedding[np.abs(embedding).argmax(axis=0), range(embedding.shape[1])])
    return embedding * np.where(signs == 0, 1.0, signs)


def spectral_clustering(
    C: torch.Tensor,
    n_clusters: int,
    random_state: int = DEFAULTS["random_state"],
    eigen_solver: str = DEFAULTS["eigen_solver"],
):
    """Labels (numpy int64, N) and the sparse affinity used, for coefficient matrix C.

    eigen_solver: "arpack" (scipy, CPU; the default) or "lobpcg" (torch, on C's device).
    """
    KNOB["eigen_solver"].check(eigen_solver)
    affinity = sparse_affinity(C)
    n = C.shape[0]
    if n_clusters == 1:
        return np.zeros(n, dtype=np.int64), affinity
    embedding = spectral_embedding(affinity, n_clusters, random_state, eigen_solver, C.device)
    kmeans = KMeans(n_clusters=n_clusters, n_init=KMEANS_N_INIT, random_state=random_state)
    with warnings.catch_warnings():
        # fewer distinct points than clusters (e.g. duplicated tokens) is not an error here
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = kmeans.fit_predict(embedding).astype(np.int64)
    return labels, affinity
