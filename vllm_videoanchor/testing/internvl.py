"""Tiny random-weight InternVL models, in two flavours of the same architecture (InternViT +
pixel shuffle + MLP projector + Qwen2):

- "hf" (`--arch internvl`): the Hugging Face format (`InternVLForConditionalGeneration`,
  model_type "internvl", native in transformers 5.x). vLLM 0.32 maps that architecture name to
  its `InternS1ForConditionalGeneration` (model_executor/models/interns1.py).
- "chat" (`--arch internvl_chat`): the original OpenGVLab format (`InternVLChatModel`,
  model_type "internvl_chat", `llm_config` + `vision_config`). vLLM has the model (internvl.py)
  and its own processor, but no config class, and transformers has none either: the builder
  writes a minimal `configuration_internvl_chat.py` (plus `auto_map`) beside config.json, so
  vLLM loads it with `trust_remote_code=True` (local code; nothing is downloaded), as it loads
  real checkpoints. vLLM enables video for it only with a Qwen2/Qwen3 LM and `<|video_pad|>`
  in the vocabulary.

Both: vision tower hidden 64, 2 layers, 2 heads, image 112, patch 14 (8 x 8 patches),
pixel shuffle 0.5, so one frame (one tile) is 4 x 4 = 16 visual tokens; text of the chosen
size (specs.SIZES). Dynamic tiling is off (one tile per image, as for video frames). About
1.2 MB, a few seconds. For one seed the two flavours hold the same weights and their
tokenizers the same ids (`<video>` in "hf" and `<|video_pad|>` in "chat" are both id 470), so
transformers' InternVL can score either's prompts.
"""

from __future__ import annotations

import json
from pathlib import Path

from .specs import SIZES
from .tokenizer import build_tokenizer, chat_template

ARCHS = ("internvl", "internvl_chat")
FLAVORS = ("hf", "chat")
IMAGE_SIZE = 112
PATCH = 14
DOWNSAMPLE = 0.5
# visual tokens per tile / video frame: (112 / 14)^2 * 0.5^2
TOKENS_PER_FRAME = int((IMAGE_SIZE // PATCH) ** 2 * DOWNSAMPLE**2)
# InternViT (300M: hidden 1024, 24 layers, 16 heads, qkv bias) reduced
HF_VISION = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                 image_size=IMAGE_SIZE, patch_size=PATCH, attention_bias=True)
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

# HF format: the tokenizer names its image tokens (InternVLProcessor reads them as
# tokenizer.start_image_token etc.); `<video>` is one token, `<IMG_CONTEXT>` the image's.
HF_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]
HF_NAMED_TOKENS = {"start_image_token": "<img>", "end_image_token": "</img>",
                   "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}
HF_CHAT_TEMPLATE = chat_template(image="<IMG_CONTEXT>\n", video="<video>\n")

# Original format (Qwen2 LM): vLLM's processor expands the plain text "<image>" / "<video>"
# and uses <|video_pad|> as the video context token (it only enables video when the LM is
# Qwen2/3 and <|video_pad|> is in the vocabulary), <IMG_CONTEXT> as the image's.
CHAT_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>",
                       "<|video_pad|>"]
CHAT_CHAT_TEMPLATE = chat_template(image="<image>\n", video="<video>\n")


def _text_config(tokenizer, size: dict) -> dict:
    return dict(
        model_type="qwen2", vocab_size=len(tokenizer), hidden_size=size["hidden"],
        intermediate_size=size["intermediate"], num_hidden_layers=size["layers"],
        num_attention_heads=size["heads"], num_key_value_heads=size["kv_heads"],
        max_position_embeddings=8192, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6}, tie_word_embeddings=False,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )


def build(out: Path, arch: str, seed: int, size: dict) -> Path:
    """Write a tiny random-weight `arch` (one of ARCHS) of `size` (a SIZES entry) to `out`."""
    out.mkdir(parents=True, exist_ok=True)
    return _build_hf(out, seed, size) if arch == "internvl" else _build_chat(out, seed, size)


def build_tiny_internvl(out_dir: str | Path, flavor: str = "hf", seed: int = 0, size: str = "tiny") -> Path:
    """Write a tiny random-weight InternVL model of `flavor` to `out_dir` and return the path."""
    if flavor not in FLAVORS:
        raise ValueError(f"flavor must be one of {FLAVORS}, got {flavor!r}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {tuple(SIZES)}, got {size!r}")
    return build(Path(out_dir), "internvl" if flavor == "hf" else "internvl_chat", seed, SIZES[size])


def _build_hf(out: Path, seed: int, size: dict) -> Path:
    import torch
    from transformers import (
        GotOcr2ImageProcessor,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
    )

    tokenizer = build_tokenizer(HF_SPECIAL_TOKENS, HF_CHAT_TEMPLATE)
    # named, so that they are saved in tokenizer_config.json and read back as attributes
    tokenizer._set_model_specific_special_tokens(dict(HF_NAMED_TOKENS))
    config = InternVLConfig(
        text_config=_text_config(tokenizer, size), vision_config=dict(HF_VISION),
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"), image_seq_length=TOKENS_PER_FRAME,
        downsample_ratio=DOWNSAMPLE, projector_hidden_act="gelu", vision_feature_layer=-1,
        vision_feature_select_strategy="default", tie_word_embeddings=False,
    )
    config.architectures = ["InternVLForConditionalGeneration"]
    torch.manual_seed(seed)
    InternVLForConditionalGeneration(config).to(torch.bfloat16).save_pretrained(out)
    side = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    norm = dict(image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD)
    InternVLProcessor(
        # crop_to_patches off: one 112 x 112 tile per image, like a video frame
        image_processor=GotOcr2ImageProcessor(size=side, crop_to_patches=False, min_patches=1, max_patches=1,
                                              **norm),
        video_processor=InternVLVideoProcessor(size=side, do_sample_frames=False, **norm),
        tokenizer=tokenizer, image_seq_length=TOKENS_PER_FRAME, chat_template=HF_CHAT_TEMPLATE,
    ).save_pretrained(out)
    return out


# The original format's config classes, which transformers does not ship (the hub models
# carry them as remote code); the builder writes this module beside config.json.
CHAT_CONFIG_MODULE = '''"""InternVLChatConfig, reduced to what vLLM's InternVLChatModel reads (written by
vllm_videoanchor.testing.internvl; the original is OpenGVLab's configuration_internvl_chat.py)."""

from transformers import PreTrainedConfig
from transformers.models.auto import CONFIG_MAPPING


class InternVisionConfig(PreTrainedConfig):
    model_type = "intern_vit_6b"

    def __init__(self, num_channels=3, patch_size=14, image_size=224, qkv_bias=False, hidden_size=3200,
                 num_attention_heads=25, intermediate_size=12800, qk_normalization=True, num_hidden_layers=48,
                 use_flash_attn=False, hidden_act="gelu", norm_type="rms_norm", layer_norm_eps=1e-6, dropout=0.0,
                 drop_path_rate=0.0, attention_dropout=0.0, initializer_range=0.02, initializer_factor=0.1,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_channels = num_channels
        self.patch_size = patch_size
        self.image_size = image_size
        self.qkv_bias = qkv_bias
        self.hidden_size = hidden_size
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.qk_normalization = qk_normalization
        self.num_hidden_layers = num_hidden_layers
        self.use_flash_attn = use_flash_attn
        self.hidden_act = hidden_act
        self.norm_type = norm_type
        self.layer_norm_eps = layer_norm_eps
        self.dropout = dropout
        self.drop_path_rate = drop_path_rate
        self.attention_dropout = attention_dropout
        self.initializer_range = initializer_range
        self.initializer_factor = initializer_factor


class InternVLChatConfig(PreTrainedConfig):
    model_type = "internvl_chat"
    has_no_defaults_at_init = True

    def __init__(self, vision_config=None, llm_config=None, use_backbone_lora=0, use_llm_lora=0,
                 select_layer=-1, force_image_size=None, downsample_ratio=0.5, template=None,
                 dynamic_image_size=False, use_thumbnail=False, ps_version="v1", min_dynamic_patch=1,
                 max_dynamic_patch=6, **kwargs):
        super().__init__(**kwargs)
        if isinstance(vision_config, PreTrainedConfig):
            vision_config = vision_config.to_dict()
        if isinstance(llm_config, PreTrainedConfig):
            llm_config = llm_config.to_dict()
        self.vision_config = InternVisionConfig(**(vision_config or {}))
        llm_config = dict(llm_config or {"model_type": "qwen2"})
        self.llm_config = CONFIG_MAPPING[llm_config.get("model_type", "qwen2")](**llm_config)
        self.use_backbone_lora = use_backbone_lora
        self.use_llm_lora = use_llm_lora
        self.select_layer = select_layer
        self.force_image_size = force_image_size
        self.downsample_ratio = downsample_ratio
        self.template = template
        self.dynamic_image_size = dynamic_image_size
        self.use_thumbnail = use_thumbnail
        self.ps_version = ps_version
        self.min_dynamic_patch = min_dynamic_patch
        self.max_dynamic_patch = max_dynamic_patch

    def to_dict(self):
        output = super().to_dict()
        output["vision_config"] = self.vision_config.to_dict()
        output["llm_config"] = self.llm_config.to_dict()
        return output
'''


def _hf_to_chat_weights(state: dict) -> dict:
    """The HF-format weights under the original format's names (the inverse of transformers'
    InternVL conversion): fused qkv, ls1/ls2, norm1/norm2, mlp1.{0,1,3}."""
    import torch

    out = {}
    for key, value in state.items():
        if key.startswith("language_model."):
            out[key] = value
            continue
        if key.startswith("multi_modal_projector."):
            rest = key[len("multi_modal_projector."):]
            index = {"layer_norm": "0", "linear_1": "1", "linear_2": "3"}[rest.split(".")[0]]
            out[f"mlp1.{index}.{rest.split('.', 1)[1]}"] = value
            continue
        rest = key[len("vision_tower."):]
        names = {"embeddings.cls_token": "embeddings.class_embedding",
                 "embeddings.position_embeddings": "embeddings.position_embedding"}
        if rest in names:
            out["vision_model." + names[rest]] = value
        elif rest.startswith("embeddings.patch_embeddings.projection."):
            out["vision_model.embeddings.patch_embedding." + rest.rsplit(".", 1)[1]] = value
        elif rest.startswith("encoder.layer."):
            _, _, layer, *tail = rest.split(".")
            tail = ".".join(tail)
            prefix = f"vision_model.encoder.layers.{layer}."
            if tail.startswith(("attention.q_proj", "attention.k_proj", "attention.v_proj")):
                if tail.startswith("attention.q_proj"):  # fuse q, k, v once
                    kind = tail.rsplit(".", 1)[1]
                    base = f"vision_tower.encoder.layer.{layer}.attention."
                    out[prefix + "attn.qkv." + kind] = torch.cat(
                        [state[base + f"{p}_proj.{kind}"] for p in "qkv"])
                continue
            tail = (tail.replace("attention.projection_layer", "attn.proj")
                    .replace("lambda_1", "ls1").replace("lambda_2", "ls2")
                    .replace("layernorm_before", "norm1").replace("layernorm_after", "norm2"))
            out[prefix + tail] = value
        else:
            raise ValueError(f"unexpected InternVL weight {key}")
    return out


def _build_chat(out: Path, seed: int, size: dict) -> Path:
    """The original format, with the weights the HF flavour gets for the same seed (so the
    two compute the same visual embeddings; the HF model can score the chat prompts)."""
    import torch
    from safetensors.torch import save_file
    from transformers import InternVLConfig, InternVLForConditionalGeneration

    tokenizer = build_tokenizer(CHAT_SPECIAL_TOKENS, CHAT_CHAT_TEMPLATE)
    text = _text_config(tokenizer, size)
    hf_config = InternVLConfig(text_config=dict(text), vision_config=dict(HF_VISION), downsample_ratio=DOWNSAMPLE,
                               image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
                               image_seq_length=TOKENS_PER_FRAME, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(hf_config).to(torch.bfloat16)
    # the HF module names of transformers 5 ("model.language_model...") -> the checkpoint's
    prefixes = {"model.language_model.": "language_model.model.", "model.vision_tower.": "vision_tower.",
                "model.multi_modal_projector.": "multi_modal_projector.", "lm_head.": "language_model.lm_head."}
    state = {}
    for key, value in model.state_dict().items():
        for old, new in prefixes.items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        state[key] = value.contiguous()
    save_file(_hf_to_chat_weights(state), out / "model.safetensors", metadata={"format": "pt"})
    config = dict(
        architectures=["InternVLChatModel"], model_type="internvl_chat",
        auto_map={"AutoConfig": "configuration_internvl_chat.InternVLChatConfig"},
        llm_config=dict(text, architectures=["Qwen2ForCausalLM"], dtype="bfloat16"),
        vision_config=dict(architectures=["InternVisionModel"], model_type="intern_vit_6b", hidden_size=64,
                           intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                           image_size=IMAGE_SIZE, patch_size=PATCH, qkv_bias=True, qk_normalization=False,
                           norm_type="layer_norm", layer_norm_eps=1e-6, initializer_factor=0.1,
                           hidden_act="gelu", use_flash_attn=False, dtype="bfloat16"),
        downsample_ratio=DOWNSAMPLE, force_image_size=IMAGE_SIZE, select_layer=-1, ps_version="v2",
        template="internvl2_5", dynamic_image_size=False, use_thumbnail=False, min_dynamic_patch=1,
        max_dynamic_patch=1, tie_word_embeddings=False, dtype="bfloat16",
    )
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "configuration_internvl_chat.py").write_text(CHAT_CONFIG_MODULE)
    (out / "generation_config.json").write_text(json.dumps(
        {"eos_token_id": text["eos_token_id"], "pad_token_id": text["pad_token_id"]}, indent=2) + "\n")
    tokenizer.save_pretrained(out)
    return out

