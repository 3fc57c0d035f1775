"""The SSC knobs, declared once: each parameter's default, kind, bound and choices.

SparseSubspaceClustering (its __init__ defaults, `Knob.check` in fit), the ADMM, spectral
and k-means functions (their keyword defaults, from `DEFAULTS`) and AnchorParams (its SSC
fields, built from `REQUEST_KNOBS` in anchor.py) all read this table, so a default or a
bound is changed here and nowhere else. The bounds that depend on a token set's size are
`size_violation`, worded by each caller for its audience. Nothing here imports vLLM,
pydantic or anchor.py.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch

SOLVERS = ("auto", "dense", "lowrank")
SOLVER_MODES = ("fast", "reference")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
BACKENDS = ("torch", "cupy")
EIGEN_SOLVERS = ("auto", "eigh", "subspace", "arpack")
ASSIGN_LABELS = ("discretize", "cluster_qr", "kmeans")
# mu_e is the second largest column norm, and a token needs another one to express it
MIN_TOKENS = 2


@dataclass(frozen=True)
class Knob:
    """One parameter: its default, kind (int, float, bool or str) and admissible values."""

    name: str
    default: object
    kind: type
    bound: Literal["> 0", ">= 0"] | None = None  # numbers: the admissible range
    choices: tuple[str, ...] | None = None  # strings: the admissible values
    request: bool = True  # False: how the solve runs (a deployment's choice), not what it computes
    optional: bool = False  # None is admissible (and means: the solver mode's own value)
    doc: str = ""

    def check(self, value) -> None:
        """ValueError naming the knob unless `value` has its kind and is within its bound or
        choices (bool is not a number here, NaN and infinities are out of every bound)."""
        if value is None and self.optional:
            return
        if self.choices is not None:
            if value not in self.choices:
                raise ValueError(f"{self.name} must be one of {self.choices}, got {value!r}")
            return
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{self.name} must be a bool, got {value!r}")
            return
        integer = self.kind is int
        ok = isinstance(value, numbers.Integral if integer else numbers.Real)
        ok = ok and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (self.bound is None or (value > 0 if self.bound == "> 0" else value >= 0))
        if not ok:
            what = "an integer" if integer else "a finite number"
            rule = f"{what} {self.bound}" if self.bound else what
            rule += " or None" if self.optional else ""
            raise ValueError(f"{self.name} must be {rule}, got {value!r}")


# In AnchorParams' field order (a fixed-length request encoding follows it).
KNOBS = (
    Knob("n_clusters", 24, int, "> 0", doc="clusters of the spectral step (or of the kmeans ablation)"),
    Knob("rho", None, float, "> 0", optional=True,
         doc="ADMM penalty parameter (docs/method.md); None: the solver mode's (reference 300, fast 100)"),
    Knob("alpha_e", 800.0, float, "> 0", doc="error weight: lambda_e = alpha_e / mu_e (data-scaled)"),
    Knob("alpha_z", 800.0, float, "> 0", doc="fit weight: lambda_z = alpha_z / mu_z (data-scaled)"),
    Knob("eps", None, float, "> 0", optional=True,
         doc="ADMM stopping tolerance on the primal residual max_i sum_j |A_ij - C_ij|; None: the solver "
             "mode's (reference 1e-4; fast none: it stops on tol)"),
    Knob("max_iter", 10000, int, "> 0", doc="ADMM iteration limit"),
    Knob("affine", True, bool, doc="affine subspaces: 1^T C = 1^T"),
    Knob("pca_rank", 0, int, ">= 0", doc="PCA to this many dimensions first (0: none)"),
    Knob("random_state", 0, int, ">= 0",
         doc="seed of the spectral step (eigensolver start block, discretize's first rotation row, k-means) and "
             "of the kmeans ablation"),
    Knob("assign_labels", "discretize", str, choices=ASSIGN_LABELS,
         doc="how the spectral embedding becomes labels: discretize (the method's official code, which leaves "
             "it unseeded; here seeded by random_state), cluster_qr (no randomness) or kmeans (seeded k-means)"),
    Knob("solver", "auto", str, choices=SOLVERS,
         doc="dense (explicit inverse), lowrank (Woodbury; fewer rows than tokens) or auto (fewer flops)"),
    Knob("solver_mode", "fast", str, choices=SOLVER_MODES,
         doc="fast (the residual split off, over-relaxed, checked every 10 steps, stopped by tol: the same "
             "program, a fifth to a half of the reference's steps) or reference (the reference code's "
             "iteration and stopping rule, exactly)"),
    Knob("dtype", "float32", str, choices=tuple(DTYPES), doc="arithmetic of the solve"),
    # not a request field (yet): requests get the mode's tol; the estimator and the solver
    # functions take it
    Knob("tol", None, float, "> 0", optional=True, request=False,
         doc="ADMM stopping tolerance on the estimated relative distance to the optimum, "
             "||C - C*||_F / ||C||_F, estimated from the contraction of the iterates (reported per solve as "
             "distance; the fast mode also stops when its primal residual is below tol / 20); None: the solver "
             "mode's (fast 2e-2; reference none: it stops on eps)"),
    Knob("backend", "torch", str, choices=BACKENDS, request=False,
         doc="torch, or cupy (CUDA only, needs CuPy installed)"),
    Knob("eigen_solver", "auto", str, choices=EIGEN_SOLVERS, request=False,
         doc="top eigenvectors of the normalised affinity: eigh (dense) or subspace (Chebyshev-filtered "
             "subspace iteration), in torch on the solver's device; arpack (scipy, on the host); auto: eigh "
             "for small token sets, subspace beyond"),
)
KNOB = {knob.name: knob for knob in KNOBS}
DEFAULTS = {knob.name: knob.default for knob in KNOBS}
REQUEST_KNOBS = tuple(knob for knob in KNOBS if knob.request)
# The keywords of admm_ssc and admm_ssc_xp (the ADMM iteration itself).
ADMM_KNOBS = ("rho", "alpha_e", "alpha_z", "eps", "tol", "max_iter", "affine", "solver", "solver_mode")


@dataclass(frozen=True)
class SolverMode:
    """How an ADMM solve iterates and stops; every mode solves the same program.

    relaxation: over-relaxation alpha of the A-step (A <- alpha A + (1 - alpha) C before the
    C- and D2-updates; 1 is plain ADMM). residual_weight: how the error term E is updated.
    None: the reference's way, E = tau(Y - Y A) after each A-step (an alternating
    minimisation inside the ADMM, which converges slowly where Y A and E compete: pure noise,
    more features than tokens). A number w: the residual Y - Y A becomes a variable of its own,
    split off with penalty w * lambda_z and its own multiplier (iteration.SplitResidual), so
    that each step is a proper two-block ADMM; the same program, the same cost per step.
    Stop, tested every `check_every` steps
    (on a GPU, one device-to-host transfer per check instead of per step): the primal
    residual max_i sum_j |A_ij - C_ij| below eps, and the estimated relative distance to the
    optimum below tol (iteration.DistanceEstimate: the contraction of C over windows of
    `window` steps, its rate the largest of the last `ratios` ratios); None: not tested.

    residual_share: where set (the fast mode), the tol test also passes when the primal
    residual is below tol * residual_share (iteration.stops): the estimate alone over-solves
    where the iterates drift at constant speed (its rate is near 1) and trusts an early rate
    on near-duplicate tokens; the residual alone stops some families farther from C* than
    the reference. Measured in docs/benchmarks.md (issue 25).
    """

    rho: float
    eps: float | None
    tol: float | None = None
    relaxation: float = 1.0
    residual_weight: float | None = None
    check_every: int = 1
    window: int = 10
    ratios: int = 3
    residual_share: float | None = None


# reference: the reference code exactly (its distance estimate is reported, never used).
# fast: rho, residual_weight and relaxation chosen on a small grid, tol, residual_share and
# ratios on the recorded checks of 33 calibration token sets (benchmarks/ssc.py --modes,
# tests/ssc/test_ssc_stopping.py, docs/benchmarks.md): at least as close to the optimum C* as
# the reference on the families of vllm_videoanchor/testing/ssc_data.py, in at most half its
# steps, on all 33 and on 10 of 12 held-out sets (two stop one check late).
SOLVER_MODE = {
    "reference": SolverMode(rho=300.0, eps=1e-4),
    "fast": SolverMode(rho=100.0, eps=None, tol=2e-2, relaxation=1.7, residual_weight=0.2, check_every=10,
                       residual_share=0.05),
}


def describe_knobs(knobs=KNOBS, indent: str = "    ") -> str:
    """numpydoc lines for a docstring's Parameters section, from the table."""
    lines = []
    for knob in knobs:
        admissible = f"one of {knob.choices}" if knob.choices else " ".join(
            filter(None, (knob.kind.__name__, knob.bound, "or None" if knob.optional else "")))
        lines.append(f"{indent}{knob.name} : {admissible}, default {knob.default!r}\n{indent}    {knob.doc}")
    return "\n".join(lines)


def lowrank_fits(rows: int, n_tokens: int) -> bool:
    """Woodbury (solver='lowrank') needs Y wider than tall: fewer rows than tokens."""
    return rows < n_tokens


class SizeViolation(NamedTuple):
    """A knob value (or the token count) that a token set's size rules out."""

    knob: str  # "n_clusters", "pca_rank", "n_tokens" or "solver"
    value: int  # for "solver": the rows the solver would see
    limit: int


def size_violation(
    n_tokens: int, n_features: int, *, n_clusters: int | None = None, pca_rank: int = 0,
    solver: str | None = None,
) -> SizeViolation | None:
    """The first bound that n_tokens tokens of n_features dimensions break, or None.

    n_clusters <= n_tokens, pca_rank <= min(n_tokens, n_features), n_tokens >= MIN_TOKENS,
    and solver='lowrank' needs fewer rows (pca_rank, else n_features) than tokens. A knob
    given as None is not checked. Callers word the message for their own audience.
    """
    if n_clusters is not None and n_clusters > n_tokens:
        return SizeViolation("n_clusters", n_clusters, n_tokens)
    if pca_rank > min(n_tokens, n_features):
        return SizeViolation("pca_rank", pca_rank, min(n_tokens, n_features))
    if n_tokens < MIN_TOKENS:
        return SizeViolation("n_tokens", n_tokens, MIN_TOKENS)
    rows = pca_rank or n_features
    if solver == "lowrank" and not lowrank_fits(rows, n_tokens):
        return SizeViolation("solver", rows, n_tokens)
    return None


_DATA_SIZE_MESSAGES = {
    "n_clusters": "n_clusters={value} must be <= n_samples={limit}",
    "pca_rank": "pca_rank={value} must be <= min(n_samples, n_features)={limit}",
    "n_tokens": "{name} needs at least {limit} samples (tokens), got {value}",
}


def check_data_size(
    n_samples: int, n_features: int, *, n_clusters: int | None = None, pca_rank: int = 0, name: str = "X"
) -> None:
    """`size_violation` as a ValueError in the estimator's terms (input `name`, samples, features)."""
    violation = size_violation(n_samples, n_features, n_clusters=n_clusters, pca_rank=pca_rank)
    if violation is not None:
        message = _DATA_SIZE_MESSAGES[violation.knob]
        raise ValueError(message.format(name=name, value=violation.value, limit=violation.limit))
