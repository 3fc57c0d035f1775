"""The visual tokens the plugin anchors, computed outside vLLM: the model's own processor and
vision tower, loaded through transformers. `explain` uses this to show a request's anchors
without an engine; the tests' dense reference uses it to check what the engine solved.

The processor is called the way vLLM's multimodal processors call it (frames already
sampled by vLLM's video loader, their metadata passed on), so the tokens are the engine's;
the engine tests check this for every supported architecture. Per item, `item_rows` also
says which rows are visual tokens: LLaVA-OneVision's newline rows are embedding rows that
the plugin leaves out of the solve (gain 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# placeholder text of one video / one image in a prompt, per config.json model_type
QWEN_VIDEO = "<|vision_start|><|video_pad|><|vision_end|>"
QWEN_IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"
PLACEHOLDERS = {
    "qwen2_vl": (QWEN_VIDEO, QWEN_IMAGE),
    "qwen2_5_vl": (QWEN_VIDEO, QWEN_IMAGE),
    "qwen3_vl": ("<|video_pad|>", QWEN_IMAGE),
    "llava_onevision": ("<video>", "<image>"),
    "internvl": ("<video>", "<image>"),
}
UNSUPPORTED = {
    "internvl_chat": "the original InternVL format has no transformers implementation; use the "
                     "Hugging Face-format checkpoint of the same model (e.g. OpenGVLab/InternVL3-8B-hf): "
                     "same weights, same visual tokens",
}


def check_model_type(model_type: str) -> None:
    """ValueError naming the model type when its visual tokens cannot be computed here."""
    if model_type in UNSUPPORTED:
        raise ValueError(f"model type {model_type!r}: {UNSUPPORTED[model_type]}")
    if model_type not in PLACEHOLDERS:
        raise ValueError(f"model type {model_type!r} has no visual tokens the plugin anchors "
                         f"(supported: {', '.join(sorted(PLACEHOLDERS))})")


def checked_model_type(model_dir) -> str:
    """config.json's model_type, checked before transformers reads the config (which cannot
    for the original InternVL format without its remote code)."""
    import json
    from pathlib import Path

    config = Path(model_dir, "config.json")
    if not config.is_file():
        raise FileNotFoundError(f"model: no config.json in {model_dir} (give a local checkpoint directory)")
    model_type = json.loads(config.read_text()).get("model_type", "")
    check_model_type(model_type)
    return model_type


def strip_sampling_flag(meta: dict) -> dict:
    """vLLM's video metadata carries do_sample_frames; transformers' VideoMetadata does not."""
    return {k: v for k, v in meta.items() if k != "do_sample_frames"}


def processor_inputs(processor, config, prompt: str, videos=None, video_metadata=None, images=None):
    """The processor's tensors for `prompt` with the given media, called as vLLM calls it:
    Qwen-VL gets the loader's metadata and samples no frames of its own (Qwen3-VL only when
    the metadata asks), LLaVA-OneVision and InternVL take every frame as given."""
    media = {}
    if videos is not None:
        media["videos"] = videos
        if "video_grid_thw" in processor.model_input_names:
            media["video_metadata"] = [strip_sampling_flag(m) for m in video_metadata]
            sample = config.model_type == "qwen3_vl" and bool(video_metadata[0].get("do_sample_frames", False))
            media["do_sample_frames"] = sample
    if images is not None:
        media["images"] = images
    return processor(text=[prompt], return_tensors="pt", **media)


@dataclass
class ItemRows:
    """One item's placeholder rows (embedding rows, in prompt order) and which are visual tokens."""

    rows: torch.Tensor
    visual: torch.Tensor


@torch.no_grad()
def item_rows(model, config, inputs) -> list[ItemRows]:
    """The rows that replace each video's (or image's) placeholder, item by item."""
    inner = model.model
    qwen = "video_grid_thw" in inputs or "image_grid_thw" in inputs
    if config.model_type == "internvl":
        # one tile per video frame; an image's tiles are consecutive
        rows = inner.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output
        rows = rows.reshape(-1, config.text_config.hidden_size)
        return [ItemRows(rows, torch.ones(len(rows), dtype=torch.bool))]
    if not qwen and "pixel_values" in inputs:
        features = inner.get_image_features(
            inputs["pixel_values"], inputs["image_sizes"], vision_feature_layer=config.vision_feature_layer,
            vision_feature_select_strategy=config.vision_feature_select_strategy,
            vision_aspect_ratio=config.vision_aspect_ratio, batch_num_images=inputs.get("batch_num_images"),
        ).pooler_output
        return [ItemRows(f, (f != inner.image_newline).any(dim=-1)) for f in features]
    if not qwen:  # LLaVA-OneVision video: frames' pooled patches, then one newline row
        rows = inner.get_video_features(inputs["pixel_values_videos"]).pooler_output[0]
        return [ItemRows(rows, torch.arange(len(rows)) < len(rows) - 1)]
    if "pixel_values" in inputs:
        out = inner.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"]).pooler_output
    else:
        out = inner.get_video_features(inputs["pixel_values_videos"], inputs["video_grid_thw"]).pooler_output
    items = list(out) if isinstance(out, (list, tuple)) else [out]
    return [ItemRows(r, torch.ones(len(r), dtype=torch.bool)) for r in items]


def placeholder_rows(model, config, inputs) -> tuple[torch.Tensor, torch.Tensor]:
    """All items' placeholder rows, concatenated, and which of them are visual tokens."""
    items = item_rows(model, config, inputs)
    return torch.cat([i.rows for i in items]), torch.cat([i.visual for i in items])


def visual_tokens(model, config, inputs) -> torch.Tensor:
    """The visual tokens of the video (or of all images, in order, as one joint token set): [N, hidden]."""
    rows, visual = placeholder_rows(model, config, inputs)
    return rows[visual]


def load_vision_model(model_dir, dtype=torch.float32, device="cpu"):
    """(processor, model) with the vision tower and projector but no decoder layers: what the
    visual tokens need (on a 7B checkpoint, about a fifth of the weights)."""
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor
    from transformers.utils import logging as hf_logging

    checked_model_type(model_dir)
    config = AutoConfig.from_pretrained(model_dir)
    text = config.text_config
    text.num_hidden_layers = 0
    if getattr(text, "layer_types", None) is not None:
        text.layer_types = []
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the skipped layers' weights are reported as unused
    try:
        model = AutoModelForImageTextToText.from_pretrained(model_dir, config=config, dtype=dtype)
    finally:
        hf_logging.set_verbosity(verbosity)
    return AutoProcessor.from_pretrained(model_dir), model.to(device).eval()

