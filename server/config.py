"""Server-wide anchor settings: set from `vllm-videoanchor serve` flags, passed to every
API-server process through the environment (vLLM may start several)."""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field

PREFIX = "VIDEOANCHOR_"


class ServerSettings(BaseModel):
    """Defaults and limits that keep one request from taking the server down."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    anchor_default: bool = Field(False, description="anchor requests that do not say")
    max_visual_tokens: int = Field(4096, ge=2, description="largest anchored item, in visual tokens")
    max_iter_limit: int = Field(10000, ge=1, description="largest max_iter a request may ask for")
    max_frames: int = Field(64, ge=1, description="largest media_io_kwargs.video.num_frames")

    def to_env(self) -> dict[str, str]:
        return {PREFIX + name.upper(): str(int(value) if isinstance(value, bool) else value)
                for name, value in self.model_dump().items()}

    @classmethod
    def from_env(cls) -> "ServerSettings":
        values = {name: os.environ[PREFIX + name.upper()] for name in cls.model_fields
                  if PREFIX + name.upper() in os.environ}
        if "anchor_default" in values:
            values["anchor_default"] = values["anchor_default"] not in ("0", "false", "off", "")
        return cls(**values)
