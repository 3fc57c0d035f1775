"""The plugin's settings: one object, one environment prefix, shared by server and engine.

`vllm-videoanchor serve` builds them from its flags (generated from the fields below: each
description is the flag's help) and hands them to every process vLLM starts (API servers,
engine core, workers) through the environment, the one channel that reaches them all; each
process reads them once, with `process_settings()`, and passes them on explicitly.
Offline use (`vllm.LLM`) reads the same variables, so a plain `LLM(...)` gets the defaults:
no server default, no size limit, no solve log. No vLLM import here.
"""

from __future__ import annotations

import functools
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .ssc.params import ASSIGN_LABELS, DEFAULTS, EIGEN_SOLVERS

ENV_PREFIX = "VIDEOANCHOR_"


class AnchorSettings(BaseSettings):
    """Defaults and limits that keep one request from taking the server down.

    A field's `served_default` (json_schema_extra) is what `serve` uses when neither its
    flag nor the environment sets it: a served engine is bounded, an offline one is not."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    anchor_default: bool = Field(False, description="anchoring for requests that carry no `anchor` option")
    max_visual_tokens: int = Field(
        0, ge=0, json_schema_extra={"served_default": 4096},
        description="largest anchored video/image, in visual tokens (larger: HTTP 400; 0: no limit)")
    max_iter_limit: int = Field(10000, ge=1, description="largest `anchor.max_iter` a request may ask for")
    max_frames: int = Field(64, ge=1, description="largest `media_io_kwargs.video.num_frames` a request may ask for")
    solve_budget_seconds: float = Field(
        0.0, ge=0, allow_inf_nan=False, json_schema_extra={"served_default": 10.0},
        description="seconds one anchored item's (or joint group's) ADMM may run in the engine, whatever the "
        "request's knobs; past them it stops with the iterate it reached, which anchors the item (reported as "
        "converged false, stopped by budget). The engine steps no other request meanwhile. 0: no bound")
    solver_backend: Literal["torch", "cupy"] = Field(
        "torch", description="array library of the SSC solve (cupy: GPU engines with CuPy installed; the ADMM "
        "loop is the same code)")
    eigen_solver: Literal[EIGEN_SOLVERS] = Field(
        DEFAULTS["eigen_solver"], description="eigensolver of the spectral step (auto: dense eigh for small token "
        "sets, subspace iteration beyond, both in torch on the solver's device; arpack: scipy on the host)")
    assign_labels: Literal[ASSIGN_LABELS] | None = Field(
        None, description="label assignment of the spectral step for anchored requests that do not name one "
        "(`anchor.assign_labels`); unset: the request option's default, discretize")
    solve_log: str | None = Field(
        None, description="SQLite file where engines report each solve to the server (serve: a new temporary "
        "file unless set)")
    # serve takes them from vLLM's own --api-key (and passes that on); newline-separated in the environment
    api_keys: Annotated[tuple[str, ...], NoDecode] = Field(
        (), repr=False, description="the API keys our layer accepts (none: VLLM_API_KEY's, else no check)")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _one_key_a_line(cls, value):
        return tuple(key for key in value.split("\n") if key) if isinstance(value, str) else value

    def request_defaults(self) -> dict[str, object]:
        """Anchor fields this deployment sets for requests that do not name them."""
        return {} if self.assign_labels is None else {"assign_labels": self.assign_labels}

    def to_env(self) -> dict[str, str]:
        """The environment that reproduces these settings in another process."""
        env = {}
        for name, value in self.model_dump().items():
            if isinstance(value, bool):
                value = int(value)
            elif isinstance(value, tuple):
                value = "\n".join(value)
            if value is not None and value != "":
                env[ENV_PREFIX + name.upper()] = str(value)
        return env


@functools.cache
def process_settings() -> AnchorSettings:
    """This process's settings: read from the environment once, validated."""
    return AnchorSettings()
