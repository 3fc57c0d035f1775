"""What the method's official pipeline computes, written by us from its description.

The official code (feufhd/VideoAnchor) solves SSC with the reference ADMM (rho 300, eps
1e-4, alpha_e = alpha_z = 800, affine, no PCA), clusters |C| + |C|^T with scikit-learn's
`SpectralClustering(affinity="precomputed", assign_labels="discretize")` and no random state
(so its labels change from run to run), and scores each token minmax(pi_i * sum_j C_ij).
Here: `reference.admm` at those settings, that scikit-learn call with random states 0, 1, ...
standing in for its unseeded runs, and `reference.scores`. Nothing is copied from its code.
"""

import numpy as np
import reference
from sklearn.cluster import SpectralClustering


def video_tokens(frames=8, positions=32, n_objects=8, dim=4, ambient=64, n_features=512,
                 drift=0.1, moving=0.25, noise=0.05, seed=0):
    """(frames * positions, n_features) tokens of a synthetic video, frame-major.

    Each position shows one of `n_objects` objects (random `dim`-dimensional subspaces of
    R^ambient, embedded randomly in R^n_features); its coefficients drift by `drift` per
    frame; a `moving` share of the positions shows a different object in every frame.
    Gaussian noise scaled by 1/sqrt(n_features), as the hard cases of reference.py.
    """
    rng = np.random.default_rng(seed)
    bases = [np.linalg.qr(rng.standard_normal((ambient, dim)))[0] for _ in range(n_objects)]
    embed = np.linalg.qr(rng.standard_normal((n_features, ambient)))[0]
    shown = rng.integers(n_objects, size=positions)
    moves = rng.random(positions) < moving
    coefficients = rng.standard_normal((positions, dim))
    tokens = []
    for _ in range(frames):
        coefficients = coefficients + drift * rng.standard_normal((positions, dim))
        objects = np.where(moves, rng.integers(n_objects, size=positions), shown)
        frame = np.stack([bases[o] @ c for o, c in zip(objects, coefficients)])
        tokens.append(frame @ embed.T)
    X = np.concatenate(tokens)
    return X + noise * rng.standard_normal(X.shape) * np.sqrt(ambient / n_features)


def official_coefficients(X):
    """C (N x N, Y ~ Y C for Y = X^T) by the reference ADMM at the official settings."""
    C, _ = reference.admm(np.asarray(X, dtype=np.float64).T)
    return C


def official_scores(C, n_clusters, runs=10):
    """The official scores of `runs` runs (scikit-learn's discretize, random states 0..runs-1)."""
    W = np.abs(C) + np.abs(C).T
    out = []
    for seed in range(runs):
        model = SpectralClustering(n_clusters, affinity="precomputed", assign_labels="discretize",
                                   random_state=seed)
        out.append(reference.scores(C, model.fit_predict(W)))
    return out


def rms(a, b):
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def distance_ratio(scores, official):
    """How far `scores` sit from the official runs, over how far those sit from each other
    (mean RMS differences): 1.0 is as close as another official run."""
    spread = np.mean([rms(a, b) for i, a in enumerate(official) for b in official[i + 1:]])
    return np.mean([rms(scores, run) for run in official]) / spread
