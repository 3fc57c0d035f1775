"""Deterministic spectral clustering of an SSC affinity, in torch on the coefficients' device.

The affinity W = |C| + |C|^T, its normalisation D^-1/2 W D^-1/2, the top eigenvectors and
the label assignment all run where C lives (a GPU's C never crosses to the host; the fast
ADMM's C is 34-47 % non-zero, so a sparse build would be pure cost). The embedding follows
scikit-learn's `spectral_embedding` (eigenvectors scaled by D^-1/2, a deterministic sign),
and the assignments are scikit-learn's algorithms written in torch:

- "discretize" (Yu & Shi; the method's official code uses scikit-learn's, unseeded): its
  one random choice, the first row of the rotation, comes from `random_state`;
- "cluster_qr" (Damle et al.): no iteration and no randomness;
- "kmeans": scikit-learn's KMeans with a fixed seed, on the host (an N x k embedding).

Eigenvectors: a dense `torch.linalg.eigh` for small N, else Chebyshev-filtered subspace
iteration with Rayleigh-Ritz from a seeded start (`top_eigenvectors`); "arpack" (scipy's
`eigsh` on the host) stays selectable. Every choice is a function of the input and the seed:
the same labels on every run and every tensor-parallel rank.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

from .params import DEFAULTS, KNOB

KMEANS_N_INIT = 10
# scikit-learn's discretize: 20 rotation updates after the first (it stops earlier once the
# labels settle; a settled rotation is a fixed point, so running all of them gives its labels)
DISCRETIZE_ITERATIONS = 21
# "auto" takes a dense eigendecomposition up to this many tokens, subspace iteration beyond
DENSE_EIGH_MAX_SAMPLES = {"cpu": 256, "cuda": 256}
SUBSPACE_DEGREE = 8  # Chebyshev filter degree per outer iteration
SUBSPACE_MAX_ITER = 200  # outer iterations (one device-to-host check each)
# largest residual ||A x - theta x|| of a wanted Ritz pair (||A|| <= 1), or the arithmetic's
# floor, 10 sqrt(N) times its unit roundoff (float32: 5e-5 at N = 2048; TF32 matmuls: 2^-11)
SUBSPACE_TOL = 1e-5


def affinity(C: torch.Tensor) -> torch.Tensor:
    """W = |C| + |C|^T (dense, on C's device)."""
    abs_c = C.abs()
    return abs_c + abs_c.T


def _normalised(W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """D^-1/2 W D^-1/2 and D^-1/2 (isolated tokens, degree 0, get 0 there)."""
    degree = W.sum(dim=1)
    inv_sqrt = torch.where(degree > 0, degree.clamp_min(torch.finfo(W.dtype).tiny).rsqrt(), 0.0)
    return inv_sqrt[:, None] * W * inv_sqrt[None, :], inv_sqrt


def _seeded_block(n: int, m: int, random_state: int, like: torch.Tensor) -> torch.Tensor:
    """An n x m start drawn on the host from the seed (the same numbers on every device)."""
    generator = torch.Generator().manual_seed(random_state)
    return (2 * torch.rand(n, m, generator=generator, dtype=torch.float64) - 1).to(like)


def _chebyshev_filter(A: torch.Tensor, X: torch.Tensor, degree: int, cut: torch.Tensor) -> torch.Tensor:
    """p(A) X for the scaled Chebyshev polynomial of `degree` that is small on [-1, cut] and
    grows above it (Zhou & Saad's filter, applied to -A, whose wanted end is -1). `cut` is a
    0-d tensor: the recurrence's scalars stay on the device."""
    e = (1 + cut) / 2  # half-width of the damped interval [-1, cut] (of -A: [-cut, 1])
    c = (1 - cut) / 2  # its centre, for -A
    sigma = e / (-1 - c)
    tau = 2 / sigma
    previous, current = X, -(A @ X + c * X) * (sigma / e)
    for _ in range(2, degree + 1):
        sigma_next = 1 / (tau - sigma)
        following = -(A @ current + c * current) * (2 * sigma_next / e) - (sigma * sigma_next) * previous
        previous, current, sigma = current, following, sigma_next
    return current


def _rayleigh_ritz(A: torch.Tensor, Q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ritz values (descending), vectors and A @ vectors of span(Q), Q orthonormal."""
    AQ = A @ Q
    H = (Q.T @ AQ).double()
    theta, S = torch.linalg.eigh((H + H.T) / 2)
    theta, S = theta.flip(0), S.flip(1).to(Q.dtype)
    return theta, Q @ S, AQ @ S


def _unit_roundoff(A: torch.Tensor) -> float:
    """Of A's matrix products: its dtype's, or TF32's where CUDA float32 products use it."""
    tf32 = A.is_cuda and A.dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32
    return 2.0**-11 if tf32 else torch.finfo(A.dtype).eps


def _subspace_eigenvectors(A: torch.Tensor, k: int, random_state: int) -> torch.Tensor:
    """Top-k eigenvectors of the symmetric A (spectrum in [-1, 1]) by Chebyshev-filtered
    subspace iteration with Rayleigh-Ritz, on A's device; a block of k + max(k, 16) vectors."""
    n = A.shape[0]
    tol = max(SUBSPACE_TOL, 10 * math.sqrt(n) * _unit_roundoff(A))
    m = min(n, k + max(k, 16))
    X = torch.linalg.qr(_seeded_block(n, m, random_state, A)).Q
    theta, X, AX = _rayleigh_ritz(A, X)
    for _ in range(SUBSPACE_MAX_ITER):
        residual = (AX[:, :k] - X[:, :k] * theta[:k].to(X.dtype)).norm(dim=0).max()
        if residual <= tol:  # the one device-to-host read per outer iteration
            break
        cut = theta[-1].clamp(-1 + 1e-3, 1 - 1e-3).to(A.dtype)
        X = torch.linalg.qr(_chebyshev_filter(A, X, SUBSPACE_DEGREE, cut)).Q
        theta, X, AX = _rayleigh_ritz(A, X)
    else:
        warnings.warn(f"spectral subspace iteration stopped at {SUBSPACE_MAX_ITER} iterations with residual "
                      f"{float(residual):.2g} > {tol:.2g}; labels may be less accurate", stacklevel=3)
    return X[:, :k]


def _arpack_eigenvectors(A: torch.Tensor, k: int, random_state: int) -> torch.Tensor:
    from scipy.sparse.linalg import ArpackNoConvergence, eigsh

    matrix = A.double().cpu().numpy()
    v0 = np.random.default_rng(random_state).uniform(-1.0, 1.0, A.shape[0])
    try:
        vectors = eigsh(matrix, k=k, which="LA", v0=v0)[1]
    except ArpackNoConvergence:
        vectors = np.linalg.eigh(matrix)[1][:, -k:]
    return torch.as_tensor(vectors).to(A)


def resolve_eigen_solver(eigen_solver: str, n: int, k: int, device: torch.device) -> str:
    """The eigensolver "auto" stands for at this size and device (others as given)."""
    if eigen_solver != "auto":
        return eigen_solver
    small = n <= DENSE_EIGH_MAX_SAMPLES.get(torch.device(device).type, DENSE_EIGH_MAX_SAMPLES["cpu"])
    return "eigh" if small or 3 * k >= n else "subspace"


def top_eigenvectors(A: torch.Tensor, k: int, random_state: int, eigen_solver: str = "auto") -> torch.Tensor:
    """The k eigenvectors of the largest eigenvalues of the symmetric A (any order)."""
    solver = resolve_eigen_solver(eigen_solver, A.shape[0], k, A.device)
    if solver == "eigh" or 3 * k >= A.shape[0]:
        return torch.linalg.eigh(A.double())[1][:, -k:].to(A.dtype)
    if solver == "arpack":
        return _arpack_eigenvectors(A, k, random_state)
    return _subspace_eigenvectors(A, k, random_state)


def spectral_embedding(
    W: torch.Tensor, n_components: int, random_state: int, eigen_solver: str = DEFAULTS["eigen_solver"]
) -> torch.Tensor:
    """Top `n_components` eigenvectors of D^-1/2 W D^-1/2, scaled by D^-1/2, each signed so
    that its largest-magnitude entry is positive (scikit-learn's embedding)."""
    normalised, inv_sqrt = _normalised(W)
    vectors = top_eigenvectors(normalised, n_components, random_state, eigen_solver)
    embedding = vectors * torch.where(inv_sqrt > 0, inv_sqrt, 1.0)[:, None]
    peak = embedding.gather(0, embedding.abs().argmax(dim=0, keepdim=True))
    return embedding * torch.where(peak < 0, -1.0, 1.0).to(embedding.dtype)


def discretize(vectors: torch.Tensor, random_state: int, first_row: int | None = None) -> torch.Tensor:
    """scikit-learn's `discretize` (Yu & Shi's multiclass spectral clustering) in torch, on
    the embedding's device. Its one random choice, the token whose row starts the rotation,
    is drawn from `random_state` (or given as `first_row`, e.g. scikit-learn's own draw)."""
    n, k = vectors.shape
    v = vectors.double()
    v = v / v.norm(dim=0).clamp_min(torch.finfo(v.dtype).tiny) * math.sqrt(n)
    v = torch.where(v[0] != 0, -v * v[0].sign(), v)
    v = v / v.norm(dim=1, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)
    start = first_row if first_row is not None else int(
        torch.randint(n, (1,), generator=torch.Generator().manual_seed(random_state)))
    rows = [v[start]]
    closeness = torch.zeros(n, dtype=v.dtype, device=v.device)
    for _ in range(1, k):  # each next row: the token least aligned with those chosen
        closeness = closeness + (v @ rows[-1]).abs()
        rows.append(v.index_select(0, closeness.argmin().reshape(1))[0])
    rotation = torch.stack(rows, dim=1)
    labels = None
    for _ in range(DISCRETIZE_ITERATIONS):
        labels = (v @ rotation).argmax(dim=1)
        indicator = torch.nn.functional.one_hot(labels, k).to(v.dtype)
        U, _, Vh = torch.linalg.svd(indicator.T @ v)
        rotation = Vh.T @ U.T
    return labels


def cluster_qr(vectors: torch.Tensor) -> torch.Tensor:
    """scikit-learn's `cluster_qr` (Damle, Minden & Ying) in torch: the k tokens a column-
    pivoted QR of the embedding picks fix the rotation; each token takes its largest entry."""
    k = vectors.shape[1]
    v = vectors.double()
    remaining = v.T.clone()  # k x n; greedy column pivoting, as LAPACK's geqp3 picks them
    picks = []
    for _ in range(k):
        pick = (remaining * remaining).sum(dim=0).argmax().reshape(1)
        picks.append(pick)
        column = remaining.index_select(1, pick)
        q = column / column.norm().clamp_min(torch.finfo(v.dtype).tiny)
        remaining = remaining - q @ (q.T @ remaining)
    pivots = torch.cat(picks)
    ut, _, vh = torch.linalg.svd(v.index_select(0, pivots).T)
    return (v @ (ut @ vh)).abs().argmax(dim=1)


def kmeans_assign(vectors: torch.Tensor, n_clusters: int, random_state: int) -> torch.Tensor:
    """scikit-learn's KMeans (seeded, 10 starts) on the embedding rows, on the host."""
    model = KMeans(n_clusters=n_clusters, n_init=KMEANS_N_INIT, random_state=random_state)
    with warnings.catch_warnings():
        # fewer distinct points than clusters (e.g. duplicated tokens) is not an error here
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = model.fit_predict(vectors.double().cpu().numpy()).astype(np.int64)
    return torch.as_tensor(labels, device=vectors.device)


def assign(vectors: torch.Tensor, n_clusters: int, random_state: int, assign_labels: str) -> torch.Tensor:
    """Labels (int64, on the embedding's device) from an N x n_clusters spectral embedding."""
    if assign_labels == "discretize":
        return discretize(vectors, random_state)
    if assign_labels == "cluster_qr":
        return cluster_qr(vectors)
    return kmeans_assign(vectors, n_clusters, random_state)


def spectral_clustering(
    C: torch.Tensor,
    n_clusters: int,
    random_state: int = DEFAULTS["random_state"],
    eigen_solver: str = DEFAULTS["eigen_solver"],
    assign_labels: str = DEFAULTS["assign_labels"],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels (int64, N) and the affinity W = |C| + |C|^T, both on C's device.

    eigen_solver: "auto" (eigh for small N, else subspace iteration), "eigh", "subspace"
    (torch, on C's device) or "arpack" (scipy, on the host). assign_labels: "discretize",
    "cluster_qr" (torch, on C's device) or "kmeans" (scikit-learn, on the host).
    """
    KNOB["eigen_solver"].check(eigen_solver)
    KNOB["assign_labels"].check(assign_labels)
    W = affinity(C)
    if n_clusters == 1:
        return torch.zeros(C.shape[0], dtype=torch.int64, device=C.device), W
    embedding = spectral_embedding(W, n_clusters, random_state, eigen_solver)
    return assign(embedding, n_clusters, random_state, assign_labels), W
