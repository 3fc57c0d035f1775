"""A tiny LLaVA-OneVision: SigLIP (hidden 64, 2 layers, 112 px, patch 14: 8 x 8 patches,
pooled to 4 x 4 per video frame) and a Qwen2 text model of the chosen size. A video of T
frames is 16 T visual tokens plus the closing newline row."""

from __future__ import annotations

from pathlib import Path

from .tokenizer import build_tokenizer, chat_template

ARCHS = ("llava_onevision",)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
# one <image> / <video> placeholder token per item, then a newline
CHAT_TEMPLATE = chat_template(image="<image>\n", video="<video>\n")


def build(out: Path, arch: str, seed: int, size: dict) -> Path:
    """Write a tiny random-weight LLaVA-OneVision of `size` (a SIZES entry) to `out`."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    image_size, patch = 112, 14
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(SPECIAL_TOKENS, CHAT_TEMPLATE)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    pinpoints = [[image_size * h, image_size * w] for h in (1, 2, 3) for w in (1, 2, 3)]
    hidden = size["hidden"]
    text = dict(
        model_type="qwen2", vocab_size=len(tokenizer), hidden_size=hidden,
        intermediate_size=size["intermediate"], num_hidden_layers=size["layers"],
        num_attention_heads=size["heads"], num_key_value_heads=size["kv_heads"],
        max_position_embeddings=8192, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6}, tie_word_embeddings=False,
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
    )
    vision = dict(model_type="siglip_vision_model", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=2, patch_size=patch, image_size=image_size, vision_use_head=False)
    config = LlavaOnevisionConfig(
        text_config=text, vision_config=vision, image_token_index=ids["<image>"],
        video_token_index=ids["<video>"], vision_feature_select_strategy="full", vision_feature_layer=-1,
        image_grid_pinpoints=pinpoints, vision_aspect_ratio="anyres_max_9", tie_word_embeddings=False,
    )
    config.architectures = ["LlavaOnevisionForConditionalGeneration"]
    torch.manual_seed(seed)
    LlavaOnevisionForConditionalGeneration(config).to(torch.bfloat16).save_pretrained(out)
    # transformers 5 writes SigLIP's weights as vision_tower.embeddings...; vLLM (and the
    # published llava-hf checkpoints) name them vision_tower.vision_model.embeddings...
    weights = out / "model.safetensors"
    renamed = {
        ("vision_tower.vision_model." + k[len("vision_tower."):]
         if k.startswith("vision_tower.") and not k.startswith("vision_tower.vision_model.") else k): v
        for k, v in load_file(weights).items()
    }
    save_file(renamed, weights, metadata={"format": "pt"})
    side = {"height": image_size, "width": image_size}
    LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size=side, image_grid_pinpoints=pinpoints),
        video_processor=LlavaOnevisionVideoProcessor(size=side),
        tokenizer=tokenizer, num_image_tokens=(image_size // patch) ** 2, vision_feature_select_strategy="full",
        chat_template=CHAT_TEMPLATE, image_token="<image>", video_token="<video>",
        vision_aspect_ratio="anyres_max_9",
    ).save_pretrained(out)
    return out
