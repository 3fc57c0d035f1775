"""The GPU paths match the CPU path (skipped cleanly without a CUDA device)."""

import numpy as np
import pytest
import reference
import torch
from markers import requires_cuda

from vllm_videoanchor.ssc import SparseSubspaceClustering, cupy_available

pytestmark = [pytest.mark.cuda, requires_cuda]


def anchor_api():
    """AnchorParams needs pydantic, which a bare GPU image may lack: only these tests skip."""
    pytest.importorskip("pydantic", reason="pydantic is not installed (the gains tests need AnchorParams)")
    from vllm_videoanchor.anchor import AnchorParams, compute_anchor_gains

    return AnchorParams, compute_anchor_gains


@pytest.mark.parametrize("n_features", [64, 512])  # low-rank and dense paths
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_cuda_matches_cpu(n_features, dtype):
    X, truth = reference.union_of_subspaces(n_features=n_features, noise=0.01)
    cpu = SparseSubspaceClustering(n_clusters=5, dtype=dtype).fit(torch.tensor(X))
    gpu = SparseSubspaceClustering(n_clusters=5, dtype=dtype).fit(torch.tensor(X).cuda())
    assert gpu.coef_.device.type == "cuda"
    tol = 1e-8 if dtype == "float64" else 2e-3
    scale = cpu.coef_.abs().max()
    assert (gpu.coef_.cpu() - cpu.coef_).abs().max() <= tol * scale
    # float32 may cross the stopping test one check (10 steps in the fast mode) apart
    assert abs(gpu.n_iter_ - cpu.n_iter_) <= (0 if dtype == "float64" else max(0.05 * cpu.n_iter_, 10))
    assert reference.misclassification(cpu.labels_.numpy(), gpu.labels_.cpu().numpy()) == 0.0


def test_gpu_gains_match_cpu_and_stay_on_device():
    AnchorParams, compute_anchor_gains = anchor_api()
    X, _ = reference.union_of_subspaces(n_features=256, noise=0.01)
    params = AnchorParams(n_clusters=5, dtype="float64")
    cpu = compute_anchor_gains(torch.tensor(X), params)
    gpu = compute_anchor_gains(torch.tensor(X).cuda(), params)
    assert gpu.gain_k.device.type == "cuda"
    assert torch.allclose(gpu.gain_k.cpu(), cpu.gain_k, atol=1e-6)
    assert torch.allclose(gpu.gain_v.cpu(), cpu.gain_v, atol=1e-6)


def test_gpu_is_deterministic():
    AnchorParams, compute_anchor_gains = anchor_api()
    X = torch.tensor(reference.union_of_subspaces(n_features=256, noise=0.02)[0]).cuda()
    runs = [compute_anchor_gains(X, AnchorParams(n_clusters=5)) for _ in range(3)]
    assert all(torch.equal(r.gain_k, runs[0].gain_k) for r in runs)


@pytest.mark.skipif(not cupy_available(), reason="CuPy is not installed")
@pytest.mark.parametrize("n_features", [64, 512])
def test_cupy_backend_matches_torch(n_features):
    X = torch.tensor(reference.union_of_subspaces(n_features=n_features, noise=0.01)[0]).cuda()
    torch_est = SparseSubspaceClustering(n_clusters=5, dtype="float64").fit(X)
    cupy_est = SparseSubspaceClustering(n_clusters=5, dtype="float64", backend="cupy").fit(X)
    assert cupy_est.n_iter_ == torch_est.n_iter_
    diff = (cupy_est.coef_ - torch_est.coef_).abs().max()
    assert diff <= 1e-8 * torch_est.coef_.abs().max()
    assert np.array_equal(cupy_est.labels_.cpu().numpy(), torch_est.labels_.cpu().numpy())


@pytest.mark.parametrize("assign_labels", ["discretize", "cluster_qr"])
def test_the_spectral_step_stays_on_the_device_with_few_syncs(assign_labels):
    """2048 tokens: labels and affinity on the GPU, the CPU's labels, and a bounded number of
    device-to-host synchronisations (one or two per subspace iteration, one per discretize
    rotation), counted by torch's sync debug mode."""
    import warnings

    from vllm_videoanchor.ssc import spectral

    C, group = reference.video_coefficients(2048)
    cpu, _ = spectral.spectral_clustering(C, 24, assign_labels=assign_labels)
    spectral.spectral_clustering(C.cuda(), 24, assign_labels=assign_labels)  # warm-up (kernels, handles)
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            labels, W = spectral.spectral_clustering(C.cuda(), 24, assign_labels=assign_labels)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = sum("synchroniz" in str(w.message) for w in caught)
    assert labels.device.type == "cuda" and W.device.type == "cuda"
    assert reference.misclassification(cpu.numpy(), labels.cpu().numpy()) == 0.0
    assert reference.misclassification(group.numpy(), labels.cpu().numpy()) < 0.01
    assert syncs <= 2 * spectral.SUBSPACE_MAX_ITER + spectral.DISCRETIZE_ITERATIONS + 10, syncs
