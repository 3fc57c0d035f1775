"""Bad input raises ValueError naming the problem."""

import numpy as np
import pytest
import torch

from vllm_videoanchor.ssc import SparseSubspaceClustering


def good_data(n=10, d=6):
    return np.random.default_rng(0).standard_normal((n, d))


@pytest.mark.parametrize(
    "X, message",
    [
        (good_data(n=1), "at least 2 samples"),
        (good_data(n=0), "at least 2 samples"),
        (np.ones(10), "2-D"),
        (np.ones((2, 3, 4)), "2-D"),
        (torch.ones(10), "2-D"),
        (np.array([[1.0, np.nan], [0.0, 1.0], [1.0, 1.0]]), "NaN or infinite"),
        (np.array([[1.0, np.inf], [0.0, 1.0], [1.0, 1.0]]), "NaN or infinite"),
        (torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), "NaN or infinite"),
        ([["a", "b"], ["c", "d"]], "numeric"),
        (torch.ones(3, 2, dtype=torch.complex64), "real-valued"),
    ],
)
def test_bad_input(X, message):
    with pytest.raises(ValueError, match=message):
        SparseSubspaceClustering(n_clusters=1).fit(X)


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(n_clusters=11), "n_clusters=11 must be <= n_samples=10"),
        (dict(n_clusters=0), "n_clusters"),
        (dict(n_clusters=2.5), "n_clusters"),
        (dict(rho=-1.0), "rho"),
        (dict(rho=0.0), "rho"),
        (dict(rho=float("nan")), "rho"),
        (dict(alpha_e=-5), "alpha_e"),
        (dict(alpha_z=float("inf")), "alpha_z"),
        (dict(eps=-1e-4), "eps"),
        (dict(max_iter=0), "max_iter"),
        (dict(max_iter=True), "max_iter"),
        (dict(pca_rank=-1), "pca_rank"),
        (dict(pca_rank=7), "pca_rank=7 must be <="),
        (dict(random_state=-1), "random_state"),
        (dict(affine="yes"), "affine"),
        (dict(dtype="float16"), "dtype"),
        (dict(solver="magic"), "solver"),
        (dict(backend="jax"), "backend"),
        (dict(eigen_solver="eigh"), "eigen_solver"),
    ],
)
def test_bad_parameters(params, message):
    with pytest.raises(ValueError, match=message):
        SparseSubspaceClustering(**{"n_clusters": 2, **params}).fit(good_data())


def test_all_zero_tokens_are_rejected():
    with pytest.raises(ValueError, match="regularisers"):
        SparseSubspaceClustering(n_clusters=1).fit(np.zeros((5, 3)))


def test_cupy_backend_needs_cuda_tensors():
    X = torch.tensor(good_data(), dtype=torch.float32)
    with pytest.raises(ValueError, match="CUDA"):
        SparseSubspaceClustering(n_clusters=2, backend="cupy").fit(X)
