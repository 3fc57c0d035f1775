"""The plugin's settings: one object, one environment prefix, shared by server and engine.

`vllm-videoanchor serve` builds them from its flags and hands them to every process vLLM
starts (API servers, engine core, workers) through the environment, the one channel that
reaches them all; each process reads them once, where it starts (the processor and the
model at construction, the middleware at start-up), and passes them on explicitly.
Offline use (`vllm.LLM`) reads the same variables, so a plain `LLM(...)` gets the defaults:
no server default, no size limit, no solve log. No vLLM import here.
"""

from __future__ import annotations

import functools
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "VIDEOANCHOR_"


class AnchorSettings(BaseSettings):
    """Defaults and limits that keep one request from taking the server down."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    anchor_default: bool = Field(False, description="anchor requests that do not say")
    max_visual_tokens: int = Field(0, ge=0, description="largest anchored item, in visual tokens (0: no limit)")
    max_iter_limit: int = Field(10000, ge=1, description="largest max_iter a request may ask for")
    max_frames: int = Field(64, ge=1, description="largest media_io_kwargs.video.num_frames")
    solve_log: str | None = Field(None, description="SQLite file where engines report each solve to the server")
    solver_backend: Literal["torch", "cupy"] = Field(
        "torch", description="array library of the SSC solve: torch, or CuPy (GPU engines with CuPy installed; "
        "the ADMM loop is the same code)")
    attention_kernel: Literal["torch", "triton"] = Field(
        "torch", description="the anchored prefill on CPU: torch, or the Triton kernel GPUs run (under the "
        "Triton interpreter: TRITON_INTERPRET=1 in the engine's environment; slower, for tests)")

    def to_env(self) -> dict[str, str]:
        """The environment that reproduces these settings in another process."""
        env = {}
        for name, value in self.model_dump().items():
            if value is not None:
                env[ENV_PREFIX + name.upper()] = str(int(value) if isinstance(value, bool) else value)
        return env

    @classmethod
    def from_env(cls) -> "AnchorSettings":
        """This process's settings (read from the environment, validated)."""
        return cls()


@functools.cache
def process_settings() -> AnchorSettings:
    """This process's settings, read from the environment once (engine code uses this)."""
    return AnchorSettings.from_env()
