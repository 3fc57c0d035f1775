"""Clustering quality, determinism and the scikit-learn estimator contract."""

import numpy as np
import pytest
import reference
import torch
from sklearn.base import clone

from vllm_videoanchor.ssc import SparseSubspaceClustering, spectral_clustering
from vllm_videoanchor.ssc.params import SOLVER_MODE


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_union_of_subspaces_is_recovered(seed):
    """5 subspaces of dimension 6 in R^64, 40 points each, small noise: < 2 % misclassified."""
    X, truth = reference.union_of_subspaces(
        n_subspaces=5, dim=6, ambient=64, points=40, noise=0.01, seed=seed
    )
    labels = SparseSubspaceClustering(n_clusters=5).fit_predict(X)
    assert reference.misclassification(truth, labels) < 0.02


def test_union_embedded_in_many_dimensions_is_recovered():
    """The same kind of data embedded randomly in R^512 (dense path, D > N)."""
    X, truth = reference.union_of_subspaces(
        n_subspaces=5, dim=6, ambient=64, points=40, noise=0.01, n_features=512, seed=4
    )
    labels = SparseSubspaceClustering(n_clusters=5).fit_predict(X)
    assert reference.misclassification(truth, labels) < 0.02


def test_labels_are_deterministic():
    X, _ = reference.union_of_subspaces(n_subspaces=6, dim=4, ambient=20, points=30, noise=0.05)
    first = SparseSubspaceClustering(n_clusters=6).fit_predict(X)
    for _ in range(2):
        assert np.array_equal(SparseSubspaceClustering(n_clusters=6).fit_predict(X), first)


def test_labels_deterministic_through_the_subspace_eigensolver():
    """N above the dense-eigh limit goes through subspace iteration from a seeded start."""
    from vllm_videoanchor.ssc import spectral

    n = spectral.DENSE_EIGH_MAX_SAMPLES["cpu"] + 88
    assert spectral.resolve_eigen_solver("auto", n, 8, torch.device("cpu")) == "subspace"
    X, truth = reference.union_of_subspaces(
        n_subspaces=8, dim=4, ambient=32, points=n // 8, noise=0.01, seed=5
    )
    C = torch.tensor(SparseSubspaceClustering(n_clusters=8).fit(X).coef_.T)
    runs = [spectral_clustering(C, 8, random_state=0)[0].numpy() for _ in range(3)]
    assert all(np.array_equal(run, runs[0]) for run in runs)
    assert reference.misclassification(truth, runs[0]) < 0.02


def test_affinity_is_symmetric_abs_of_coef(union_tokens):
    est = SparseSubspaceClustering(n_clusters=4).fit(union_tokens[0])
    W = est.affinity_matrix_
    assert isinstance(W, np.ndarray)
    expected = np.abs(est.coef_) + np.abs(est.coef_).T
    assert np.allclose(W, expected, rtol=1e-6)


def test_one_cluster_labels_everything_zero(random_tokens):
    labels = SparseSubspaceClustering(n_clusters=1).fit_predict(random_tokens)
    assert np.array_equal(labels, np.zeros(len(random_tokens)))


def test_estimator_contract(random_tokens):
    est = SparseSubspaceClustering(n_clusters=3, rho=100.0, pca_rank=5)
    params = est.get_params()
    assert params["n_clusters"] == 3 and params["rho"] == 100.0 and params["pca_rank"] == 5
    cloned = clone(est)
    assert cloned.get_params() == params
    assert est.fit(random_tokens) is est
    assert est.labels_.shape == (40,)
    assert est.coef_.shape == (40, 40)
    assert isinstance(est.n_iter_, int) and isinstance(est.converged_, bool)
    assert est.lambda_e_ > 0 and est.lambda_z_ > 0
    assert set(np.unique(est.labels_)) <= {0, 1, 2}
    est.set_params(n_clusters=2)
    assert set(np.unique(est.fit_predict(random_tokens))) <= {0, 1}


def test_defaults_are_the_reference_values():
    """The reference's program and clustering; rho and eps are the fast mode's unless set."""
    p = SparseSubspaceClustering().get_params()
    expected = dict(n_clusters=24, rho=None, alpha_e=800, alpha_z=800, eps=None, solver_mode="fast",
                    max_iter=10000, affine=True, pca_rank=0, random_state=0, device=None)
    assert {k: p[k] for k in expected} == expected
    assert (SOLVER_MODE["reference"].rho, SOLVER_MODE["reference"].eps) == (300.0, 1e-4)


@pytest.mark.parametrize("eigen_solver", ["eigh", "subspace", "arpack"])
def test_every_eigensolver_gives_the_same_partition(eigen_solver):
    X, truth = reference.union_of_subspaces(
        n_subspaces=5, dim=6, ambient=64, points=40, noise=0.01, seed=0
    )
    default = SparseSubspaceClustering(n_clusters=5).fit_predict(X)
    other = SparseSubspaceClustering(n_clusters=5, eigen_solver=eigen_solver).fit_predict(X)
    assert reference.misclassification(default, other) == 0.0
    assert reference.misclassification(truth, other) < 0.02
