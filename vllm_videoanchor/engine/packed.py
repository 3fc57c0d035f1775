"""The packed columns of an item's embedding, owned in one place.

`embed_multimodal` returns one [tokens, width] tensor per item, and vLLM caches it as it is
(encoder cache, chunked prefill), so anything an item must carry to `embed_input_ids`
rides as extra columns. Three parties append columns, in this order:

    [ LM input (hidden) | deepstack (Qwen3-VL) | EVS positions (video pruning) | gains ]

The first two are model features; vLLM's GPU runner strips the EVS position columns from
the end before `embed_input_ids`, so our gain columns and EVS cannot coexist (anchoring is
refused on engines with video pruning on: see the processor). Gains are 4 columns: g_K
and g_V, each split into a high and a low part in the model's dtype (bfloat16 alone would
round 1 + 9.5 s to ~1 %). Widths are asserted, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

GAIN_COLUMNS = 4


def pack_gains(embedding: torch.Tensor, gain_k: torch.Tensor, gain_v: torch.Tensor) -> torch.Tensor:
    """embedding [N, W] -> [N, W + 4] with (g_K hi, g_K lo, g_V hi, g_V lo)."""
    columns = []
    for gain in (gain_k, gain_v):
        gain = gain.to(torch.float32)
        high = gain.to(embedding.dtype)
        low = (gain - high.float()).to(embedding.dtype)
        columns += [high, low]
    return torch.cat([embedding, torch.stack(columns, dim=1).to(embedding.device)], dim=1)


def unpack_gains(packed: torch.Tensor):
    """Inverse of `pack_gains`: (embedding [N, W], g_K [N], g_V [N]) in float32."""
    tail = packed[:, -GAIN_COLUMNS:].float()
    return packed[:, :-GAIN_COLUMNS], tail[:, 0] + tail[:, 1], tail[:, 2] + tail[:, 3]


@dataclass(frozen=True)
class PackedLayout:
    """The column layout of one model's item embeddings."""

    hidden: int  # the LM input: what the solver sees
    deepstack: int = 0
    evs: int = 0

    @property
    def model_width(self) -> int:
        """Width of an item as the model's own embed_multimodal returns it."""
        return self.hidden + self.deepstack + self.evs

    def tokens(self, embedding: torch.Tensor) -> torch.Tensor:
        """The LM-input columns (the visual tokens the solver clusters)."""
        self._check(embedding, self.model_width)
        return embedding[:, : self.hidden]

    def pack(self, embedding: torch.Tensor, gain_k: torch.Tensor, gain_v: torch.Tensor) -> torch.Tensor:
        self._check(embedding, self.model_width)
        if self.evs:
            raise ValueError("gain columns cannot ride with EVS position columns (video pruning is on)")
        return pack_gains(embedding, gain_k, gain_v)

    def unpack(self, embedding: torch.Tensor):
        """(the model's embedding, g_K, g_V), gains None for an item that carries none."""
        width = embedding.shape[-1]
        if width == self.model_width:
            return embedding, None, None
        self._check(embedding, self.model_width + GAIN_COLUMNS)
        return unpack_gains(embedding)

    def _check(self, embedding: torch.Tensor, expected: int) -> None:
        if embedding.ndim != 2 or embedding.shape[-1] != expected:
            raise ValueError(f"videoanchor: an item embedding of shape {tuple(embedding.shape)} does not fit the "
                             f"packed layout {self} (expected width {expected})")
