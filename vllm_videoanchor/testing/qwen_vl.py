"""Tiny Qwen2-VL, Qwen2.5-VL and Qwen3-VL models (vision tower hidden 64, 2 layers; the text
model of the chosen size), with Qwen2-VL's tokenizer and chat template."""

from __future__ import annotations

from pathlib import Path

from .tokenizer import CHAT_TEMPLATE, SPECIAL_TOKENS, build_tokenizer

ARCHS = ("qwen2_5_vl", "qwen2_vl", "qwen3_vl")


def build(out: Path, arch: str, seed: int, size: dict) -> Path:
    """Write a tiny random-weight `arch` (one of ARCHS) of `size` (a SIZES entry) to `out`."""
    if arch == "qwen3_vl":
        return _build_qwen3_vl(out, seed, size)
    return _build_qwen2_vl(out, arch, seed, size)


def _mrope_section(head_dim: int) -> list[int]:
    """Temporal, height, width rotary sections summing to head_dim / 2 (Qwen's 16:24:24)."""
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def _configs(arch: str, tokenizer, size: dict):
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    hidden = size["hidden"]
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=size["intermediate"],
        num_hidden_layers=size["layers"],
        num_attention_heads=size["heads"],
        num_key_value_heads=size["kv_heads"],
        max_position_embeddings=8192,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                         "mrope_section": _mrope_section(hidden // size["heads"])},
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    vision = dict(depth=2, num_heads=2, patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
    if arch == "qwen2_5_vl":
        vision.update(hidden_size=64, intermediate_size=128, out_hidden_size=hidden,
                      window_size=112, fullatt_block_indexes=[1])
    else:
        vision.update(embed_dim=64, hidden_size=hidden, mlp_ratio=2)
    tokens = dict(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    return text, vision, tokens


def _build_qwen2_vl(out: Path, arch: str, seed: int, size: dict) -> Path:
    """Qwen2-VL or Qwen2.5-VL: vision patch 14, merge 2 (28 px per token)."""
    import torch
    import transformers
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    text, vision, tokens = _configs(arch, tokenizer, size)
    if arch == "qwen2_5_vl":
        config_cls = transformers.Qwen2_5_VLConfig
        model_cls = transformers.Qwen2_5_VLForConditionalGeneration
        processor_cls = transformers.Qwen2_5_VLProcessor
    else:
        config_cls = transformers.Qwen2VLConfig
        model_cls = transformers.Qwen2VLForConditionalGeneration
        processor_cls = transformers.Qwen2VLProcessor
    config = config_cls(text_config=text, vision_config=vision, **tokens)
    config.architectures = [model_cls.__name__]
    torch.manual_seed(seed)
    model = model_cls(config).to(torch.bfloat16)
    model.save_pretrained(out)
    pixels = dict(min_pixels=28 * 28 * 4, max_pixels=size["max_pixels"])
    processor = processor_cls(
        image_processor=Qwen2VLImageProcessor(**pixels),
        video_processor=Qwen2VLVideoProcessor(**pixels),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(out)
    return out


def _build_qwen3_vl(out: Path, seed: int, size: dict) -> Path:
    """Vision patch 16, merge 2 (32 px per token), one deepstack level; text M-RoPE sections
    in Qwen3-VL's 24:20:20 ratio, interleaved. A video's size limit counts the pixels of all
    its frames: 8 frames of 112 px become 128 px, a 4 x 8 x 8 grid, 64 tokens."""
    import torch
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    hidden, heads = size["hidden"], size["heads"]
    half = hidden // heads // 2
    t = round(half * 24 / 64)
    sections = [t, (half - t) // 2, half - t - (half - t) // 2]
    text = dict(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=size["intermediate"],
        num_hidden_layers=size["layers"], num_attention_heads=heads, num_key_value_heads=size["kv_heads"],
        # Qwen3VLTextConfig's head_dim defaults to 128, not hidden / heads; transformers always
        # interleaves the M-RoPE sections, vLLM only with mrope_interleaved (default False)
        head_dim=hidden // heads, max_position_embeddings=8192, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_section": sections,
                         "mrope_interleaved": True},
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
    )
    vision = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2, patch_size=16, spatial_merge_size=2,
                  temporal_patch_size=2, out_hidden_size=hidden, num_position_embeddings=64,
                  deepstack_visual_indexes=[0])
    config = Qwen3VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                           video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                           vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=False)
    config.architectures = ["Qwen3VLForConditionalGeneration"]
    torch.manual_seed(seed)
    Qwen3VLForConditionalGeneration(config).to(torch.bfloat16).save_pretrained(out)
    factor = 32  # patch 16 x merge 2
    Qwen3VLProcessor(
        # Qwen3-VL's 0.5 mean / std: vLLM normalises video frames with the image processor's
        image_processor=Qwen2VLImageProcessor(
            patch_size=16, merge_size=2, temporal_patch_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3,
            min_pixels=factor * factor * 4, max_pixels=factor * factor * 64 * (size["max_pixels"] // (28 * 28 * 64))),
        video_processor=Qwen3VLVideoProcessor(
            patch_size=16, merge_size=2, temporal_patch_size=2, cap_pixels_per_frame=False, do_sample_frames=False,
            size={"shortest_edge": factor * factor * 8, "longest_edge": factor * factor * 8 * 16}),
        tokenizer=tokenizer, chat_template=CHAT_TEMPLATE,
    ).save_pretrained(out)
    return out
