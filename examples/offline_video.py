"""Offline inference with and without VideoAnchor on a video, through `vllm.LLM`.

    python examples/offline_video.py                     # builds the tiny random-weight model
    python examples/offline_video.py --model Qwen/Qwen2.5-VL-7B-Instruct --video clip.mp4

With the package installed the plugin is active; the only per-request change is
`mm_processor_kwargs={"anchor": ...}`. (The tiny model's answers are random tokens: it
shows the mechanics, not the accuracy.)
"""

import argparse
import os
import tempfile

import numpy as np

from vllm_videoanchor.testing import build_tiny_model, spec, video_metadata

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # CPU build: a small KV cache


def load_video(path, num_frames=8):
    """(frames uint8 [T, H, W, 3], metadata) as vLLM expects for Qwen-VL models."""
    if path is None:
        rng = np.random.default_rng(0)
        frames = rng.uniform(0, 255, (num_frames, 112, 112, 3)).astype(np.uint8)
        fps = 2.0
    else:
        import cv2

        capture = cv2.VideoCapture(path)
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = capture.get(cv2.CAP_PROP_FPS) or 1.0
        frames = []
        for index in np.linspace(0, total - 1, num_frames).astype(int):
            capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
            ok, frame = capture.read()
            if ok:
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        frames = np.stack(frames)
    return frames, video_metadata(len(frames), fps)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="model directory or hub name (default: tiny model)")
    parser.add_argument("--video", help="an mp4 file (default: random frames)")
    args = parser.parse_args()

    model = args.model
    if model is None:
        model = str(build_tiny_model(tempfile.mkdtemp(prefix="tiny-qwen2_5_vl-")))

    from vllm import LLM, SamplingParams

    llm = LLM(model=model, max_model_len=4096, limit_mm_per_prompt={"video": 1})
    video = spec("qwen2_5_vl").video_placeholder  # Qwen2.5-VL's, the tiny default's and the hub model's
    prompt = f"<|im_start|>user\n{video}Where is the chair relative to the table?<|im_end|>\n<|im_start|>assistant\n"
    request = {"prompt": prompt, "multi_modal_data": {"video": load_video(args.video)}}
    params = SamplingParams(max_tokens=16, temperature=0.0, logprobs=1)
    anchored = dict(request, mm_processor_kwargs={"anchor": {"alpha_k": 9.5, "alpha_v": 2.5}})
    for name, req in (("plain", request), ("anchored", anchored)):
        out = llm.generate(req, params)[0].outputs[0]
        print(f"{name:>8}: {out.text!r}  (cumulative logprob {out.cumulative_logprob:.3f})")


if __name__ == "__main__":
    main()
