"""Tiny random-weight vision-language models, built offline (no hub), for the demo and tests.

    python -m vllm_videoanchor.tiny OUT_DIR --arch qwen2_5_vl|qwen2_vl|qwen3_vl|llava_onevision|internvl|internvl_chat
                                   [--size tiny|small]

writes a standard Hugging Face model directory (config, safetensors weights, a byte-level
BPE tokenizer trained here with the Qwen2-VL special tokens and chat template, image and
video processor configs) that both transformers and vLLM load. A few MB; a few seconds.
Text ("tiny", the tests' model): 2 layers, hidden 128, 4 heads of 32 (CPU attention's
smallest head size), 2 KV heads. "small" (benchmarks): 8 layers, hidden 1024, 16 heads of 64,
4 KV heads, and 4x the pixels per frame.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import cpu_compat

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
ARCHS = ("qwen2_5_vl", "qwen2_vl", "qwen3_vl", "llava_onevision", "internvl", "internvl_chat")
LLAVA_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
VOCAB_SIZE = 512
SIZES = {
    "tiny": dict(hidden=128, intermediate=256, layers=2, heads=4, kv_heads=2, max_pixels=28 * 28 * 64),
    "small": dict(hidden=1024, intermediate=2816, layers=8, heads=16, kv_heads=4, max_pixels=28 * 28 * 256),
}

# The Qwen2-VL chat template, reduced to what the tests and the demo send.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or part['type'] == 'image_url' %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' or part['type'] == 'video_url' %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# LLaVA-OneVision's: one <image> / <video> placeholder token per item, then a newline.
LLAVA_CHAT_TEMPLATE = (
    CHAT_TEMPLATE.replace("<|vision_start|><|image_pad|><|vision_end|>", "<image>\n")
    .replace("<|vision_start|><|video_pad|><|vision_end|>", "<video>\n")
)

_CORPUS = (
    "The camera moves through a room with a table, two chairs, a window and a lamp. "
    "How many chairs are there? Which object is closest to the door? Describe the video. "
    "user assistant system You are a helpful assistant. left right above below near far "
    "red green blue yellow square circle moving static frame image picture scene object "
    "0 1 2 3 4 5 6 7 8 9 ten twenty distance meters what where when why how yes no"
)


def build_tokenizer(special_tokens=tuple(SPECIAL_TOKENS), chat_template=CHAT_TEMPLATE):
    """A byte-level BPE tokenizer with the given special tokens, trained on a tiny corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE - len(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    tokenizer.add_special_tokens(list(special_tokens))
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=chat_template,
        model_max_length=8192,
    )


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


def build_tiny_model(out_dir: str | Path, arch: str = "qwen2_5_vl", seed: int = 0,
                     size: str = "tiny") -> Path:
    """Write a tiny random-weight model of `arch` to `out_dir` and return the path."""
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {tuple(SIZES)}, got {size!r}")
    if arch == "llava_onevision":
        return _build_llava_onevision(Path(out_dir), seed, SIZES[size])
    if arch in ("internvl", "internvl_chat"):
        from .tiny_internvl import build_tiny_internvl

        return build_tiny_internvl(out_dir, "hf" if arch == "internvl" else "chat", seed, size)
    if arch == "qwen3_vl":
        return _build_qwen3_vl(Path(out_dir), seed, SIZES[size])
    cpu_compat.install()
    import torch
    import transformers
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    text, vision, tokens = _configs(arch, tokenizer, SIZES[size])
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
    pixels = dict(min_pixels=28 * 28 * 4, max_pixels=SIZES[size]["max_pixels"])
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
    cpu_compat.install()
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


def _build_llava_onevision(out: Path, seed: int, size: dict) -> Path:
    """SigLIP (hidden 64, 2 layers, 112 px, patch 14: 8 x 8 patches, pooled to 4 x 4 per
    video frame) and a Qwen2 text model. A video of T frames is 16 T visual tokens plus the
    closing newline row."""
    cpu_compat.install()
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
    tokenizer = build_tokenizer(LLAVA_SPECIAL_TOKENS, LLAVA_CHAT_TEMPLATE)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in LLAVA_SPECIAL_TOKENS}
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
        chat_template=LLAVA_CHAT_TEMPLATE, image_token="<image>", video_token="<video>",
        vision_aspect_ratio="anyres_max_9",
    ).save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--arch", choices=ARCHS, default="qwen2_5_vl")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", choices=tuple(SIZES), default="tiny")
    args = parser.parse_args(argv)
    print(build_tiny_model(args.out_dir, args.arch, args.seed, args.size))


if __name__ == "__main__":
    main()
