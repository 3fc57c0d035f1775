"""`make demo`: the product in miniature, on a tiny random-weight model, in a minute or two.

1. builds the tiny Qwen2.5-VL model and writes a synthetic mp4 (a textured static scene,
   a square moving across it);
2. starts `vllm-videoanchor serve` on the model (float32, so that step 5's own solve can
   be compared with the engine's to float precision);
3. asks about the video through the OpenAI client without and with `anchor`, and prints
   the x-videoanchor headers and how far anchoring moved the prompt's logprobs;
4. fetches the anchored request's anchor map from the server (the link in its headers);
5. draws it over the video with `vllm-videoanchor explain` (heatmap.png, labels.png,
   anchors.json under --out), and checks that explain's own solve agrees;
6. stops the server.

The tiny model's weights are random: the answers are noise, and the anchors fall where
random features happen to recur. Run `explain` on a real checkpoint to see real ones.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FRAMES, SIZE, FPS = 16, 224, 4.0
QUESTION = "What moves in this video?"


def synthetic_mp4(path: Path, seed: int = 0) -> Path:
    """FRAMES frames of SIZE x SIZE: a static scene of coloured blocks with fine noise, and
    a bright square crossing it left to right."""
    import cv2

    rng = np.random.default_rng(seed)
    blocks = rng.uniform(40, 215, (SIZE // 28, SIZE // 28, 3)).repeat(28, 0).repeat(28, 1)
    scene = np.clip(blocks + rng.normal(0, 12, blocks.shape), 0, 255)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (SIZE, SIZE))
    for t in range(FRAMES):
        frame = scene.copy()
        x = t * (SIZE - 56) // (FRAMES - 1)
        frame[84:140, x:x + 56] = (60, 60, 240)  # BGR: red
        writer.write(frame.astype(np.uint8))
    writer.release()
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, port: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "vllm_videoanchor_server.cli", "serve", str(model), "--port", str(port),
               "--dtype", "float32", "--max-model-len", "4096", "--enforce-eager",
               "--limit-mm-per-prompt", '{"video": 1}']
    env = dict(os.environ)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # the CPU build's KV cache, in GiB
    return subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def wait_healthy(server: subprocess.Popen, url: str, log: Path, timeout: float = 300) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline and server.poll() is None:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"the server did not start; its log ({log}) ends:\n{log.read_text()[-3000:]}")


def ask(client, model: str, video_url: str, anchor) -> tuple[dict, list[float]]:
    """(x-videoanchor headers, the prompt tokens' logprobs) of one chat request."""
    extra = {"prompt_logprobs": 0, **({"anchor": anchor} if anchor is not None else {})}
    raw = client.chat.completions.with_raw_response.create(
        model=model, max_tokens=4, temperature=0.0, extra_body=extra,
        messages=[{"role": "user", "content": [{"type": "video_url", "video_url": {"url": video_url}},
                                               {"type": "text", "text": QUESTION}]}])
    completion = raw.parse()
    steps = completion.model_extra["prompt_logprobs"][1:]  # position 0 has none
    logprobs = [next(iter(step.values()))["logprob"] for step in steps]  # prompt_logprobs=0: the token's own
    headers = {k: v for k, v in raw.headers.items() if k.startswith("x-videoanchor")}
    return headers, logprobs


def main(argv: list[str] | None = None) -> int:
    import base64

    import httpx
    from openai import OpenAI

    from .explain import explain
    from .testing import build_tiny_model

    parser = argparse.ArgumentParser(prog="python -m vllm_videoanchor.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="videoanchor-demo", help="where the pictures go (default: %(default)s)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="videoanchor-demo-"))
    started = time.time()

    model = build_tiny_model(work / "model", "qwen2_5_vl")
    video = synthetic_mp4(out / "synthetic.mp4")
    print(f"1. tiny Qwen2.5-VL model in {model}; video {video} ({FRAMES} frames, {SIZE} px)")
    port, log = free_port(), out / "server.log"
    server = start_server(model, port, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(server, url, log)
        print(f"2. vllm-videoanchor serve is up on {url} ({time.time() - started:.0f} s; log: {log})")
        client = OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=300)
        video_url = "data:video/mp4;base64," + base64.b64encode(video.read_bytes()).decode()
        plain_headers, plain = ask(client, str(model), video_url, None)
        anchor = {"n_clusters": 6}
        headers, anchored = ask(client, str(model), video_url, anchor)
        moved = np.abs(np.array(anchored) - np.array(plain))
        print(f"3. without anchor: {plain_headers}")
        print(f"   with anchor={anchor}:")
        for name, value in headers.items():
            print(f"     {name}: {value}")
        print(f"   prompt logprobs moved by up to {moved.max():.3f} (mean {moved.mean():.4f}) over "
              f"{len(moved)} prompt tokens")
        if headers.get("x-videoanchor-anchor") != "applied":
            raise RuntimeError(f"anchoring was not applied: {headers}")
        anchor_map = httpx.get(url + headers["x-videoanchor-explain"], timeout=30).json()
        print(f"4. anchor map from {headers['x-videoanchor-explain']}: {anchor_map['n_tokens']} tokens, "
              f"{len(set(anchor_map['label']))} clusters")
    finally:
        server.terminate()
        server.wait(60)
    drawn = explain(model, [str(video)], anchor, dtype="float32", anchor_map=anchor_map)
    paths = drawn.write(out)
    own = explain(model, [str(video)], anchor, dtype="float32")  # the server's --dtype
    from sklearn.metrics import adjusted_rand_score

    gap = np.abs(own.gains.score.numpy() - np.array(anchor_map["score"])).max()
    same_clusters = adjusted_rand_score(own.gains.labels.numpy(), anchor_map["label"])
    print(f"5. {paths['heatmap']} and {paths['labels']}: the server's map over the {len(drawn.panels)} token "
          f"frames; explain's own solve (no server) finds the same clusters (ARI {same_clusters:.2f}) and "
          f"scores within {gap:.1e} (the solver's stopping step moves with float rounding)")
    print(f"6. server stopped; {time.time() - started:.0f} s in all")
    return 0 if same_clusters > 0.99 and gap < 2e-2 else 1


if __name__ == "__main__":
    sys.exit(main())
