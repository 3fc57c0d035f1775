"""What the plugin reads of vLLM's model classes (the model side).

The packed item embedding (engine/packed.py) lays out its columns after what vLLM's model
already puts there (deepstack features, EVS positions), so their widths come from here.
"""

from __future__ import annotations

import torch

# Columns EVS (video pruning) appends to image and video embeddings: M-RoPE positions
# (qwen2_5_vl.py, _postprocess_*_embeds_evs), stripped again by the GPU runner.
EVS_POSITION_COLUMNS = 4


def text_hidden_size(model) -> int:
    return model.config.get_text_config().hidden_size


def deepstack_columns(model) -> int:
    """Qwen3-VL's deepstack features ride after the LM input in each item's embedding."""
    return model.multiscale_dim if getattr(model, "use_deepstack", False) else 0


def evs_columns(model) -> int:
    """Position columns EVS appends to each item's embedding (0 when pruning is off)."""
    return EVS_POSITION_COLUMNS if getattr(model, "is_multimodal_pruning_enabled", False) else 0


def image_newline(model) -> torch.Tensor:
    return model.image_newline
