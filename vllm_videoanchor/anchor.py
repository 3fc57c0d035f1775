"""From a request's visual tokens to per-token attention gains (docs/method.md).

`AnchorParams` is every knob of the method, validated with messages that name the field;
`compute_anchor_gains` runs Sparse Subspace Clustering on the tokens, turns each token's
cluster size and self-expression strength into a score s in [0, 1], and returns the key
and value gains g_K = 1 + alpha_k s and g_V = 1 + alpha_v s. The paper's ablations are
selectable: `method` (how tokens are clustered, or no clustering) and `score` (which of
the two factors the score keeps). `MODEL_DEFAULTS` holds per-architecture defaults.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, create_model, field_validator, model_validator

from .ssc import SparseSubspaceClustering, as_token_matrix, kmeans_labels
from .ssc.admm import NO_ADMM, AdmmStats, forward_stats
from .ssc.params import DEFAULTS, DTYPES, REQUEST_KNOBS, Knob, size_violation

SCORE_EPS = 1e-5  # the reference's guard in (s_hat - min) / (max - min + 1e-5)
# Largest alpha_q / alpha_k / alpha_v, 100x the paper's: a key gain of 1 + 1000 s already adds
# 6.9 nats to a logit, and a value gain scales activations that float16 holds only to 65504.
# Unbounded, alpha_k = 1e308 made NaN gains (inf x 0 in float32) and NaN attention, served
# as "applied".
MAX_ALPHA = 1000.0
# AnchorParams fields that are SparseSubspaceClustering parameters of the same name
ESTIMATOR_FIELDS = frozenset(knob.name for knob in REQUEST_KNOBS)


class _MethodParams(BaseModel):
    """The knobs of the method itself: how tokens are scored, how scores become gains."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    method: Literal["ssc", "kmeans", "uniform"] = Field(
        "ssc", description="ssc: the method; kmeans: k-means clusters of the tokens (ablation); "
        "uniform: every visual token s = 1 (ablation)")
    score: Literal["both", "size", "self_expression"] = Field(
        "both", description="s from cluster share x self-expression (both), or one factor alone (ablation)")
    alpha_q: float = Field(4.0, ge=0, le=MAX_ALPHA, allow_inf_nan=False, description="no effect (cancels)")
    alpha_k: float = Field(9.5, ge=0, le=MAX_ALPHA, allow_inf_nan=False, description="key gain: 1 + alpha_k s")
    alpha_v: float = Field(2.5, ge=0, le=MAX_ALPHA, allow_inf_nan=False, description="value gain: 1 + alpha_v s")

    @field_validator("score")
    @classmethod
    def _score_needs_clusters(cls, score: str, info: ValidationInfo) -> str:
        if score != "both" and info.data.get("method") == "uniform":
            raise ValueError("method='uniform' gives every visual token the same score; "
                             "score variants apply to 'ssc' and 'kmeans'")
        return score


def _pydantic_field(knob: Knob) -> tuple:
    """(annotation, Field) for an SSC knob: its default, kind and bound, choices as a Literal."""
    if knob.choices is not None:
        return Literal[knob.choices], Field(knob.default, description=knob.doc)
    if knob.kind is bool:
        return bool, Field(knob.default, description=knob.doc)
    bound = {}
    if knob.bound == ">= 0":
        bound = {"ge": 0}
    elif knob.bound == "> 0":  # integers > 0 are >= 1: pydantic's message and schema as before
        bound = {"ge": 1} if knob.kind is int else {"gt": 0}
    finite = {} if knob.kind is int else {"allow_inf_nan": False}
    annotation = (knob.kind | None) if knob.optional else knob.kind
    return annotation, Field(knob.default, **bound, **finite, description=knob.doc)


# The SSC fields come from ssc/params.py, after the method's own (engine/option.py encodes
# requests in this field order).
_ParamsFields = create_model(
    "_ParamsFields", __base__=_MethodParams, __module__=__name__,
    **{knob.name: _pydantic_field(knob) for knob in REQUEST_KNOBS},
)

# How each data-size bound is worded for a request (the engine prefixes "anchor.").
_TOKEN_SET_MESSAGES = {
    "n_clusters": "n_clusters={value} exceeds the {limit} visual tokens of an item",
    "pca_rank": "pca_rank={value} exceeds min(visual tokens, hidden size) = {limit}",
    "n_tokens": "an item needs at least {limit} visual tokens",
    "solver": "solver='lowrank' needs fewer features than visual tokens (got {value} >= {limit}); "
              "use 'auto' or 'dense'",
}


class TokenSetError(ValueError):
    """An item's token set these parameters cannot solve; `field` names the parameter to
    change (None when no parameter can help, e.g. too few tokens)."""

    def __init__(self, message: str, field: str | None):
        super().__init__(message)
        self.field = field


class AnchorParams(_ParamsFields):
    """The knobs of VideoAnchor. Defaults: the paper's InternVL2-8B gains, the reference SSC.

    alpha_q is accepted for compatibility with the paper and has no effect: a per-query
    term is constant along each softmax row and cancels.
    """

    @model_validator(mode="after")
    def _eps_within_the_solves_resolution(self):
        """eps below the solve's arithmetic resolution (torch.finfo(dtype).eps; the residual
        is a row sum of |A - C| over coefficients of order one) can never be met: the solve
        would run to max_iter, or the server's budget, to no use."""
        floor = torch.finfo(DTYPES[self.dtype]).eps
        if self.eps is not None and self.eps < floor:
            raise ValueError(f"eps={self.eps:g} is below the {self.dtype} solve's resolution ({floor:.3g}): the "
                             "residual test could never pass; use eps >= that, or dtype='float64'")
        return self

    @model_validator(mode="after")
    def _weights_are_normal_numbers(self):
        """alpha_e and alpha_z below the solve's smallest normal number (e.g. 5e-324) pass "> 0"
        but underflow: lambda_e = alpha_e / mu_e became 0 and the solve failed in the engine."""
        floor = torch.finfo(DTYPES[self.dtype]).tiny
        for name in ("alpha_e", "alpha_z"):
            if getattr(self, name) < floor:
                raise ValueError(f"{name}={getattr(self, name):g} is below the {self.dtype} solve's smallest normal "
                                 f"number ({floor:.3g}): its regulariser would underflow to 0")
        return self

    @property
    def clusters_tokens(self) -> bool:
        """Whether the method partitions the tokens (so n_clusters must fit them)."""
        return self.method != "uniform"

    @property
    def solves_admm(self) -> bool:
        """Whether the method runs the ADMM (for clusters, or for self-expression strengths)."""
        return self.method == "ssc" or (self.method == "kmeans" and self.score != "size")

    def check_token_set(self, n_tokens: int, n_features: int) -> None:
        """ValueError unless one item of n_tokens visual tokens of n_features dimensions can
        be solved with these parameters: the bounds that depend on an item's size, which
        field validation cannot know. Lets the engine refuse a request up front."""
        violation = size_violation(
            n_tokens, n_features,
            n_clusters=self.n_clusters if self.clusters_tokens else None,
            pca_rank=self.pca_rank,
            solver=self.solver if self.solves_admm else None,
        )
        if violation is not None:
            message = _TOKEN_SET_MESSAGES[violation.knob].format(value=violation.value, limit=violation.limit)
            raise TokenSetError(message, violation.knob if violation.knob in type(self).model_fields else None)

    def estimator(self, device=None, **how) -> SparseSubspaceClustering:
        """The clustering estimator these parameters describe; `how` the solve runs (the
        estimator's deployment parameters: backend, eigen_solver, time_budget)."""
        return SparseSubspaceClustering(**self.model_dump(include=ESTIMATOR_FIELDS), device=device, **how)


PAPER_VALUES = "the paper's values for InternVL2-8B (alpha_q, alpha_k, alpha_v = 4.0, 9.5, 2.5; 8 frames)"
UNVALIDATED = "unvalidated: no published values for this model; the paper's InternVL2-8B values"


@dataclass(frozen=True)
class ModelDefaults:
    """An architecture's default anchor parameters, and where they come from."""

    source: str
    overrides: dict = field(default_factory=dict)  # fields that differ from AnchorParams' defaults
    frames: int | None = None  # frames per video the values were chosen with, where known


# One table, keyed by the architecture names vLLM registers; anything else gets the defaults.
MODEL_DEFAULTS: dict[str, ModelDefaults] = {
    "InternVLChatModel": ModelDefaults(PAPER_VALUES, frames=8),
    "InternVLForConditionalGeneration": ModelDefaults(PAPER_VALUES + ", Hugging Face format", frames=8),
    "Qwen2_5_VLForConditionalGeneration": ModelDefaults(UNVALIDATED),
    "Qwen2VLForConditionalGeneration": ModelDefaults(UNVALIDATED),
    "Qwen3VLForConditionalGeneration": ModelDefaults(UNVALIDATED),
    "LlavaOnevisionForConditionalGeneration": ModelDefaults(UNVALIDATED),
}


def params_for_model(architecture: str | None, given: dict | None = None) -> AnchorParams:
    """The architecture's defaults with the fields a request gave on top (validated together)."""
    defaults = MODEL_DEFAULTS.get(architecture)
    overrides = defaults.overrides if defaults else {}
    return AnchorParams.model_validate({**overrides, **(given or {})})


@forward_stats("stats")
@dataclass
class AnchorGains:
    """Per-token results for one token set (all tensors of shape (N,), on the tokens' device);
    the solver's statistics also read as gains.n_iter, gains.converged, ..."""

    score: torch.Tensor
    gain_k: torch.Tensor
    gain_v: torch.Tensor
    labels: torch.Tensor
    stats: AdmmStats  # NO_ADMM where the method ran no ADMM
    seconds: float  # solver plus clustering, wall clock


def shared_expression_score(
    coef: torch.Tensor | None, labels: torch.Tensor, score: str = "both", dtype=None
) -> torch.Tensor:
    """s = minmax(pi * r): pi_i = |cluster(i)| / N, r_i = sum_j C_ij (signed row sum of C).

    `coef` is the estimator's coef_ = C^T, so r is its column sum. score="size" keeps pi
    alone (coef may be None), "self_expression" r alone.
    """
    n = labels.shape[0]
    dtype = coef.dtype if coef is not None else dtype
    cluster_sizes = torch.bincount(labels, minlength=int(labels.max()) + 1)
    share = cluster_sizes[labels].to(dtype) / n
    if score == "size":
        raw = share
    else:
        strength = coef.sum(dim=0)
        raw = strength if score == "self_expression" else share * strength
    low, high = raw.min(), raw.max()
    return (raw - low) / (high - low + SCORE_EPS)


@dataclass
class _Solve:
    """What the clustering step produced."""

    score: torch.Tensor
    labels: torch.Tensor
    stats: AdmmStats = NO_ADMM


def _solve(tokens: torch.Tensor, params: AnchorParams, how: dict) -> _Solve:
    """Labels and scores as the method asks: SSC's clusters, k-means clusters, or none."""
    if params.method == "ssc":
        est = params.estimator(**how).fit(tokens)
        return _Solve(shared_expression_score(est.coef_, est.labels_, params.score), est.labels_, est.stats_)
    X = as_token_matrix(tokens, "tokens", dtype=DTYPES[params.dtype])
    if params.method == "uniform":
        return _Solve(torch.ones(X.shape[0], dtype=X.dtype, device=X.device),
                      torch.zeros(X.shape[0], dtype=torch.int64, device=X.device))
    labels = kmeans_labels(X, params.n_clusters, params.random_state, params.pca_rank)
    if not params.solves_admm:  # score="size": no self-expression needed
        return _Solve(shared_expression_score(None, labels, "size", X.dtype), labels)
    # one cluster makes the spectral step a no-op: the coefficients without clustering
    est = params.model_copy(update={"n_clusters": 1}).estimator(**how).fit(X)
    return _Solve(shared_expression_score(est.coef_, labels, params.score), labels, est.stats_)


def compute_anchor_gains(
    tokens: torch.Tensor, params: AnchorParams | None = None, *, backend: str = DEFAULTS["backend"],
    eigen_solver: str = DEFAULTS["eigen_solver"], time_budget: float | None = None,
) -> AnchorGains:
    """Scores and gains for the visual tokens (N, D) of one request, on the tokens' device.
    backend, eigen_solver: how the solve runs (SparseSubspaceClustering's); `time_budget`:
    seconds the ADMM may run (its stats then say "budget"); None: no bound."""
    params = AnchorParams() if params is None else params
    if not isinstance(params, AnchorParams):
        raise TypeError(f"params must be an AnchorParams, got {type(params).__name__}")
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"tokens must be a torch.Tensor, got {type(tokens).__name__}")
    start = time.perf_counter()
    solve = _solve(tokens, params, dict(backend=backend, eigen_solver=eigen_solver, time_budget=time_budget))
    score = solve.score
    if score.is_cuda:
        torch.cuda.synchronize(score.device)
    seconds = time.perf_counter() - start
    return AnchorGains(
        score=score,
        gain_k=1.0 + params.alpha_k * score,
        gain_v=1.0 + params.alpha_v * score,
        labels=solve.labels,
        stats=solve.stats,
        seconds=seconds,
    )
