"""Seeded token sets for the solver's tests and benchmark (numpy, D x N columns, float64).

The families the solver modes were calibrated on (benchmarks/ssc.py --modes):
- "subspaces": 24 random subspaces of dimension 6-12 of a 64-dimensional space, embedded
  randomly in D dimensions, with noise (video tokens: each stable region spans a few
  directions across frames);
- "near_duplicates": the same with 5 % of the tokens near-copies of others (static
  background patches), which leaves the split of weight among copies undetermined;
- "noise": i.i.d. Gaussian tokens, no structure at all (the solver's hardest case).
"""

from __future__ import annotations

import math

import numpy as np

FAMILIES = ("subspaces", "near_duplicates", "noise")


def token_family(name: str, n: int, d: int, seed: int = 0, noise: float = 0.05) -> np.ndarray:
    """(d, n) float64 tokens of one family (see the module docstring)."""
    rng = np.random.default_rng(seed)
    if name == "noise":
        return rng.standard_normal((d, n))
    if name not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {name!r}")
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
    if copies:
        sources = rng.choice(m, copies, replace=False)
        Y = np.concatenate([Y, Y[:, sources] + 1e-3 * scale * rng.standard_normal((d, copies))], axis=1)
    return Y
