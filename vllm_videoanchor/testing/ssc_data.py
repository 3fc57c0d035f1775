"""Seeded token sets for the solver's tests and benchmark (numpy, D x N columns, float64).

The families the solver modes were calibrated on (benchmarks/ssc.py --modes):
- "subspaces": 24 random subspaces of dimension 6-12 of a 64-dimensional space, embedded
  randomly in D dimensions, with noise (video tokens: each stable region spans a few
  directions across frames);
- "near_duplicates": the same with 5 % of the tokens near-copies of others (static
  background patches), which leaves the split of weight among copies undetermined;
- "noise": i.i.d. Gaussian tokens, no structure at all (the solver's hardest case);
- "outliers": "subspaces" with 5 % of the tokens replaced by Gaussian tokens of the same
  norm, which no other token expresses (the error term E takes them);
- "unequal_dims": six subspaces of dimensions 4 to 12 drawn directly in the D-dimensional
  space (no 64-dimensional ambient), unequal in size too, noise 0.01, and ten outliers
  (the case a new user tried at N = 225, D = 768: issue 25).
"""

from __future__ import annotations

import math

import numpy as np

FAMILIES = ("subspaces", "near_duplicates", "noise", "outliers", "unequal_dims")


def token_family(name: str, n: int, d: int, seed: int = 0, noise: float = 0.05) -> np.ndarray:
    """(d, n) float64 tokens of one family (see the module docstring)."""
    rng = np.random.default_rng(seed)
    if name == "noise":
        return rng.standard_normal((d, n))
    if name not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {name!r}")
    if name == "unequal_dims":
        return _unequal_dims(rng, n, d)
    ambient, n_subspaces = 64, 24
    if d < ambient:
        raise ValueError(f"family {name!r} embeds a {ambient}-dimensional space: d must be >= {ambient}, got {d}")
    copies = n // 20 if name == "near_duplicates" else 0
    m = n - copies
    sizes = np.full(n_subspaces, m // n_subspaces)
    sizes[: m % n_subspaces] += 1
    blocks = []
    for size, dim in zip(sizes, rng.integers(6, 13, size=n_subspaces)):
        basis, _ = np.linalg.qr(rng.standard_normal((ambient, dim)))
        blocks.append(basis @ rng.standard_normal((dim, size)))
    embed, _ = np.linalg.qr(rng.standard_normal((d, ambient)))
    scale = math.sqrt(ambient / d)
    Y = embed @ np.concatenate(blocks, axis=1) + noise * scale * rng.standard_normal((d, m))
    if name == "outliers":
        _replace_with_outliers(rng, Y, max(1, n // 20))
    if copies:
        sources = rng.choice(m, copies, replace=False)
        Y = np.concatenate([Y, Y[:, sources] + 1e-3 * scale * rng.standard_normal((d, copies))], axis=1)
    return Y


def _replace_with_outliers(rng, Y: np.ndarray, count: int) -> None:
    """Overwrite `count` evenly spread columns of Y with Gaussian tokens of the median norm."""
    d, n = Y.shape
    columns = np.linspace(0, n - 1, count).round().astype(int)
    norm = float(np.median(np.linalg.norm(Y, axis=0)))
    outliers = rng.standard_normal((d, count))
    Y[:, columns] = outliers * (norm / np.linalg.norm(outliers, axis=0))


def _unequal_dims(rng, n: int, d: int, n_outliers: int = 10, noise: float = 0.01) -> np.ndarray:
    """Six subspaces of dimensions 4, 6, 7, 9, 10, 12 of R^d, sizes proportional to their
    dimension, noise per coordinate, `n_outliers` tokens replaced by Gaussian ones."""
    dims = np.linspace(4, 12, 6).round().astype(int)
    if d < dims.max() or n < 2 * len(dims) + n_outliers:
        raise ValueError(f"family 'unequal_dims' needs d >= {dims.max()} and n >= {2 * len(dims) + n_outliers}, "
                         f"got d={d}, n={n}")
    sizes = np.maximum(2, np.floor(n * dims / dims.sum()).astype(int))
    sizes[-1] += n - sizes.sum()
    blocks = []
    for size, dim in zip(sizes, dims):
        basis, _ = np.linalg.qr(rng.standard_normal((d, dim)))
        blocks.append(basis @ rng.standard_normal((dim, size)))
    Y = np.concatenate(blocks, axis=1) + noise * rng.standard_normal((d, n))
    _replace_with_outliers(rng, Y, min(n_outliers, n // 4))
    return Y
