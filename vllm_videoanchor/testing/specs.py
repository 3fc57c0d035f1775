"""What each tiny architecture looks like from the outside: prompt placeholders, visual-token
counts of the tests' media, and the video metadata passed with frames. Tests, benchmarks and
examples import these instead of re-declaring them. Pure data: nothing heavy is imported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

ARCHS = ("qwen2_5_vl", "qwen2_vl", "qwen3_vl", "llava_onevision", "internvl", "internvl_chat")

# Text model sizes. "tiny" (the tests' model): 2 layers, hidden 128, 4 heads of 32 (CPU
# attention's smallest head size), 2 KV heads. "small" (benchmarks): 8 layers, hidden 1024,
# 16 heads of 64, 4 KV heads, and 4x the pixels per frame (Qwen-VL's processors).
SIZES = {
    "tiny": dict(hidden=128, intermediate=256, layers=2, heads=4, kv_heads=2, max_pixels=28 * 28 * 64),
    "small": dict(hidden=1024, intermediate=2816, layers=8, heads=16, kv_heads=4, max_pixels=28 * 28 * 256),
}

# The tests' media: a video of 8 random frames and images of 112 x 112 pixels.
VIDEO_FRAMES = 8
VIDEO_SIZE = 112
IMAGE_SIZE = 112
VIDEO_FPS = 2.0

QWEN_VIDEO = "<|vision_start|><|video_pad|><|vision_end|>"
QWEN_IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"


def video_metadata(num_frames: int = VIDEO_FRAMES, fps: float = VIDEO_FPS) -> dict:
    """The metadata vLLM takes with already-decoded frames, `(frames, metadata)`: all frames
    kept, no sampling by the processor."""
    return {"total_num_frames": num_frames, "fps": fps, "duration": num_frames / fps, "video_backend": "opencv",
            "frames_indices": list(range(num_frames)), "do_sample_frames": False}


@dataclass(frozen=True)
class ArchSpec:
    """One tiny architecture (model_type is config.json's, equal to the `--arch` name)."""

    model_type: str
    # placeholder text of one video / one image in a prompt (vLLM expands it)
    video_placeholder: str
    image_placeholder: str
    # visual tokens (what the plugin anchors) of the tests' 8-frame 112 px video
    video_tokens: int
    # prompt tokens the video's placeholder becomes in transformers' processor (LLaVA-OneVision
    # adds the closing newline row to the visual tokens)
    video_placeholder_tokens: int
    # visual tokens of one 112 px image
    image_tokens: int
    # the model's config class is local code written beside config.json (trust_remote_code)
    trust_remote_code: bool = False

    def video_metadata(self, num_frames: int = VIDEO_FRAMES, fps: float = VIDEO_FPS) -> dict:
        return video_metadata(num_frames, fps)


SPECS = {
    # Qwen2-VL / Qwen2.5-VL: 8 frames -> 4 temporal x (4 x 4) merged patches; an image 4 x 4
    "qwen2_5_vl": ArchSpec("qwen2_5_vl", QWEN_VIDEO, QWEN_IMAGE, 64, 64, 16),
    "qwen2_vl": ArchSpec("qwen2_vl", QWEN_VIDEO, QWEN_IMAGE, 64, 64, 16),
    # Qwen3-VL: 4 x (4 x 4) at 128 px (patch 16); its processor expands the bare video pad into
    # per-frame timestamps and pads
    "qwen3_vl": ArchSpec("qwen3_vl", "<|video_pad|>", QWEN_IMAGE, 64, 64, 16),
    # LLaVA-OneVision: 8 x (4 x 4) pooled patches (plus the closing newline row in the prompt);
    # an image (anyres, unpooled) 128
    "llava_onevision": ArchSpec("llava_onevision", "<video>\n", "<image>\n", 128, 129, 128),
    # InternVL: 8 frames x 16 (4 x 4 after pixel shuffle), between text "FrameN: <img>" and
    # "</img>" tokens; one tile per image
    "internvl": ArchSpec("internvl", "<video>\n", "<IMG_CONTEXT>\n", 128, 128, 16),
    # the original InternVL format: vLLM's processor expands the plain text tags
    "internvl_chat": ArchSpec("internvl_chat", "<video>\n", "<image>\n", 128, 128, 16, trust_remote_code=True),
}
assert tuple(SPECS) == ARCHS


def spec(arch: str) -> ArchSpec:
    """The spec of `arch` (one of ARCHS: a tiny model's `--arch`, its config's model_type)."""
    if arch not in SPECS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    return SPECS[arch]


def model_spec(model_dir: str | Path) -> ArchSpec:
    """The spec of the tiny model in `model_dir`, by its config.json's model_type."""
    return spec(json.loads((Path(model_dir) / "config.json").read_text())["model_type"])
