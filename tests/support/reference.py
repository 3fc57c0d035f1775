"""Independent, dense, slow reference of docs/method.md in plain numpy (float64).

Written from the formulas, not from the package: the full N x N system is solved at every
ADMM step, the regularisers are found with loops over tokens, as the reference code does.
"""

import numpy as np


def soft_threshold(v, t):
    return np.sign(v) * np.maximum(np.abs(v) - t, 0.0)


def regularizers(Y, alpha_e=800.0, alpha_z=800.0):
    """lambda_e = alpha_e / mu_e, lambda_z = alpha_z / mu_z, with the loops of the definition."""
    n = Y.shape[1]
    l1 = [np.abs(Y[:, j]).sum() for j in range(n)]
    mu_e = min(max(l1[j] for j in range(n) if j != i) for i in range(n))
    gram = Y.T @ Y
    mu_z = min(max(abs(gram[i, j]) for j in range(n) if j != i) for i in range(n))
    return alpha_e / mu_e, alpha_z / mu_z


def pca(Y, rank):
    """Mean-centred PCA of the columns of Y (D x N) to `rank` rows."""
    if rank == 0:
        return Y
    centred = Y - Y.mean(axis=1, keepdims=True)
    U, _, _ = np.linalg.svd(centred, full_matrices=False)
    return U[:, :rank].T @ centred


# The fast solver mode's settings as its docs state them (README, ssc/params.py): the same
# program, the residual split off with penalty 0.2 lambda_z, over-relaxed, checked every 10
# steps, stopped by the estimated distance or by the primal residual below tol / 20.
FAST = dict(rho=100.0, eps=None, tol=2e-2, relaxation=1.7, residual_weight=0.2, check_every=10,
            residual_share=0.05)


def estimated_distance(changes, norm, ratios=3):
    """q / (1 - q) d_j / ||C||, d_j = ||C_j - C_{j-1}||_F over 10-step windows, q the largest
    of the last `ratios` ratios d_i / d_{i-1} (inf while unknown or q >= 1, 0 when C is still)."""
    recent = changes[-ratios - 1:]
    if len(recent) <= ratios:
        return np.inf
    if max(recent) == 0:
        return 0.0
    if norm == 0 or min(recent[:-1]) == 0:
        return np.inf
    q = max(b / a for a, b in zip(recent, recent[1:]))
    return np.inf if q >= 1 else q / (1 - q) * recent[-1] / norm


def admm(Y, rho=300.0, alpha_e=800.0, alpha_z=800.0, eps=1e-4, max_iter=10000, affine=True,
         relaxation=1.0, residual_weight=None, check_every=1, tol=None, residual_share=None):
    """C (N x N, Y ~ Y C) and the number of iterations run. Defaults: the reference code.

    relaxation (alpha): A_hat = alpha A + (1 - alpha) C replaces A in the C- and D2-updates;
    residual_weight (w): None, E = tau(Y - Y A) after the A-step (the reference); a number,
    the residual R = Y - Y A is a variable of its own with penalty w lambda_z and scaled
    multiplier U, R the proximal map of the Huber loss min_E lambda_e ||E||_1 + lambda_z / 2
    ||R - E||^2 (found here by minimising over E and R in closed form per entry); the
    stopping test runs every
    `check_every` steps (and at max_iter): max_i sum_j |A_hat - C| < eps (eps None: not
    tested) and the estimated relative distance to the optimum (`estimated_distance`, updated
    every 10 steps) < tol (None: not tested), or, with a residual_share, the residual above
    < tol * residual_share.
    """
    changes, C_window, distance = [], np.zeros((Y.shape[1], Y.shape[1])), np.inf
    d, n = Y.shape
    lambda_e, lambda_z = regularizers(Y, alpha_e, alpha_z)
    weight = lambda_z if residual_weight is None else residual_weight * lambda_z
    ones = np.ones((n, 1))
    C = np.zeros((n, n))
    E = np.zeros((d, n))  # the reference's error term, or R - U of the split
    R, U = np.zeros((d, n)), np.zeros((d, n))
    D1 = np.zeros((n, 1))
    D2 = np.zeros((n, n))
    for it in range(1, max_iter + 1):
        lhs = weight * Y.T @ Y + rho * np.eye(n)
        rhs = weight * Y.T @ (Y - E) + rho * C - D2
        if affine:
            lhs = lhs + rho * ones @ ones.T
            rhs = rhs + rho * ones @ ones.T - ones @ D1.T
        A = np.linalg.solve(lhs, rhs)
        if affine:
            D1 = D1 + rho * (A.T @ ones - ones)
        A_hat = relaxation * A + (1 - relaxation) * C
        C = soft_threshold(A_hat + D2 / rho, 1.0 / rho)
        np.fill_diagonal(C, 0.0)
        if residual_weight is None:
            E = soft_threshold(Y - Y @ A, lambda_e / lambda_z)
        else:
            V = relaxation * (Y - Y @ A) + (1 - relaxation) * R  # Y - Y A_hat
            P = V + U
            # min over (R, E) of lambda_e |E| + lambda_z / 2 (R - E)^2 + weight / 2 (R - P)^2:
            # E = tau(P, lambda_e (lambda_z + weight) / (lambda_z weight)), then R between P and E
            E_part = soft_threshold(P, lambda_e * (lambda_z + weight) / (lambda_z * weight))
            R = (weight * P + lambda_z * E_part) / (weight + lambda_z)
            U = U + V - R
            E = R - U
        D2 = D2 + rho * (A_hat - C)
        if it % 10 == 0:
            changes.append(np.linalg.norm(C - C_window))
            C_window, distance = C, estimated_distance(changes, np.linalg.norm(C))
        if it % check_every == 0 or it == max_iter:
            residual = np.abs(A_hat - C).sum(axis=1).max()
            if (eps is None or residual < eps) and (tol is None or distance < tol or (
                    residual_share is not None and residual < tol * residual_share)):
                break
    return C, it


def scores(C, labels, score="both"):
    """s_i = minmax(|cluster(i)| / N * sum_j C_ij), with the reference's 1e-5 guard; the
    ablations keep one factor: "size" |cluster(i)| / N, "self_expression" sum_j C_ij."""
    n = len(labels)
    s_hat = np.empty(n)
    for i in range(n):
        share = (labels == labels[i]).sum() / n
        strength = None if C is None else C[i, :].sum()
        s_hat[i] = {"both": lambda: share * strength, "size": lambda: share,
                    "self_expression": lambda: strength}[score]()
    return (s_hat - s_hat.min()) / (s_hat.max() - s_hat.min() + 1e-5)


def gains(C, labels, alpha_k, alpha_v, score="both"):
    s = scores(C, labels, score)
    return s, 1.0 + alpha_k * s, 1.0 + alpha_v * s


def kmeans(X, k):
    """Lloyd's k-means from a farthest-point start (deterministic), until labels settle."""
    centres = [X[0]]
    for _ in range(1, k):
        distance = np.min([((X - c) ** 2).sum(axis=1) for c in centres], axis=0)
        centres.append(X[distance.argmax()])
    centres = np.array(centres)
    labels = None
    while True:
        new = np.argmin([((X - c) ** 2).sum(axis=1) for c in centres], axis=0)
        if labels is not None and (new == labels).all():
            return labels
        labels = new
        centres = np.array([X[labels == j].mean(axis=0) for j in range(k)])


def blobs(sizes=(20, 14, 10, 6), n_features=16, spread=0.3, seed=0):
    """Gaussian blobs of unequal sizes far apart (k-means' clear case), and their truth."""
    rng = np.random.default_rng(seed)
    centres = 4.0 * rng.standard_normal((len(sizes), n_features))
    X = np.concatenate([c + spread * rng.standard_normal((m, n_features)) for c, m in zip(centres, sizes)])
    return X, np.repeat(np.arange(len(sizes)), sizes)


def union_of_subspaces(
    n_subspaces=5, dim=6, ambient=64, points=40, noise=0.01, n_features=None, seed=0
):
    """Points (rows) from random `dim`-dimensional subspaces of R^ambient, embedded randomly in
    R^n_features (default: ambient), with Gaussian noise scaled by 1/sqrt(n_features).

    Hard cases live in few ambient dimensions: random subspaces of thousands of dimensions
    are almost orthogonal and trivially separable.
    """
    rng = np.random.default_rng(seed)
    n_features = ambient if n_features is None else n_features
    blocks, truth = [], []
    for k in range(n_subspaces):
        basis, _ = np.linalg.qr(rng.standard_normal((ambient, dim)))
        blocks.append((basis @ rng.standard_normal((dim, points))).T)
        truth += [k] * points
    X = np.concatenate(blocks)
    if n_features != ambient:
        embed, _ = np.linalg.qr(rng.standard_normal((n_features, ambient)))
        X = X @ embed.T
    X = X + noise * rng.standard_normal(X.shape) * np.sqrt(ambient / n_features)
    return X, np.array(truth)


def misclassification(truth, labels):
    """Fraction of points wrong under the best matching of cluster ids (Hungarian)."""
    from scipy.optimize import linear_sum_assignment

    k = max(truth.max(), labels.max()) + 1
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (truth, labels), 1)
    rows, cols = linear_sum_assignment(-confusion)
    return 1.0 - confusion[rows, cols].sum() / truth.size


def spectral_labels(C, n_clusters, seed=0):
    """The reference code's clustering step: scikit-learn on the dense affinity |C| + |C|^T
    (k-means label assignment with a fixed seed instead of the reference's random one)."""
    from sklearn.cluster import SpectralClustering

    W = np.abs(C) + np.abs(C).T
    model = SpectralClustering(n_clusters, affinity="precomputed", random_state=seed)
    return model.fit_predict(W)


def video_coefficients(n, seed=0):
    """A coefficient matrix like the fast ADMM's on a video (n tokens, 24 groups, about 40 %
    non-zero, columns summing to 1), built directly (torch float32), and the groups."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    group = torch.randint(0, 24, (n,), generator=generator)
    same = (group[:, None] == group[None, :]).float()
    C = torch.rand(n, n, generator=generator) * (torch.rand(n, n, generator=generator) < 0.4) * (0.05 + same)
    C.fill_diagonal_(0)
    return C / C.sum(dim=0, keepdim=True), group
