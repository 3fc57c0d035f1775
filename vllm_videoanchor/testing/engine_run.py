"""What `selftest`'s engine runs on a tiny model need (the engine tests' scripts use them too):
the test media, the prompt, a summary of each output, and a recorder of the plugin's solves
(the engine must run in-process for that, i.e. with VLLM_ENABLE_V1_MULTIPROCESSING=0).

The recorder wraps the solver the model calls, because the dense reference needs the visual
tokens and gains of each solve, which the solve log (engine/solve_log.py) does not keep: it
keeps each solve's statistics and its scores in float32."""

from __future__ import annotations

import json

import numpy as np

from . import specs

PROMPT = "<|im_start|>user\n{media}How many chairs?<|im_end|>\n<|im_start|>assistant\n"


def placeholders(model) -> tuple[str, str]:
    """(video, image) placeholder text of the model in directory `model`."""
    spec = specs.model_spec(model)
    return spec.video_placeholder, spec.image_placeholder


def video_item(seed=0):
    """The tests' video: (frames, metadata) as vLLM takes them."""
    frames = np.random.default_rng(seed).uniform(
        0, 255, (specs.VIDEO_FRAMES, specs.VIDEO_SIZE, specs.VIDEO_SIZE, 3)).astype(np.uint8)
    return frames, specs.video_metadata()


def image_item(seed=1):
    from PIL import Image

    pixels = np.random.default_rng(seed).uniform(0, 255, (specs.IMAGE_SIZE, specs.IMAGE_SIZE, 3)).astype(np.uint8)
    return Image.fromarray(pixels)


def parse_results(stdout: str) -> dict | None:
    """The JSON of an engine run's `RESULTS <json>` line (None if it printed none)."""
    line = next((row for row in stdout.splitlines() if row.startswith("RESULTS ")), None)
    return None if line is None else json.loads(line[len("RESULTS "):])


def summary(output) -> dict:
    """Tokens, logprobs and prompt logprobs of one RequestOutput, JSON-ready."""
    completion = output.outputs[0]
    return {
        "prompt_token_ids": list(output.prompt_token_ids),
        "tokens": list(completion.token_ids),
        "logprobs": [{str(k): v.logprob for k, v in step.items()} for step in completion.logprobs],
        "prompt_logprobs": [
            None if step is None else {str(k): v.logprob for k, v in step.items()}
            for step in output.prompt_logprobs
        ],
    }


def prompt_logprobs(result: dict) -> np.ndarray:
    """vLLM's log p(prompt token i | tokens < i), i >= 1, from a summary."""
    ids = result["prompt_token_ids"]
    return np.array([result["prompt_logprobs"][i][str(ids[i])] for i in range(1, len(ids))])


def max_logprob_diff(a: dict, b: dict) -> float:
    """Largest difference over the logprobs both summaries report (prompt and output)."""
    diffs = [0.0]
    for steps_a, steps_b in ((a["prompt_logprobs"], b["prompt_logprobs"]), (a["logprobs"], b["logprobs"])):
        for sa, sb in zip(steps_a, steps_b):
            if sa and sb:
                diffs += [abs(v - sb[t]) for t, v in sa.items() if t in sb]
    return max(diffs)


def record_solves() -> list:
    """Keeps what the plugin's solver was given and returned, in this process, so that a
    dense reference can be handed vLLM's own gains."""
    from vllm_videoanchor.engine import model

    solves, solve = [], model.compute_anchor_gains

    def recording(tokens, params, **options):
        gains = solve(tokens, params, **options)
        solves.append({"tokens": tokens.tolist(), "gain_k": gains.gain_k.tolist(), "gain_v": gains.gain_v.tolist(),
                       "score": gains.score.tolist(), "labels": gains.labels.tolist()})
        return gains

    model.compute_anchor_gains = recording
    return solves
